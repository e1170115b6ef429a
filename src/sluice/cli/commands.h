#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace sluice::cli {

// Exit codes of every `sluice` command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // something failed at run time
inline constexpr int kExitUsage = 2;    // the command line was wrong

// Each Add*Command adds a subcommand to `app` and returns the function that runs it after
// parsing; the function returns the process exit code.
using CommandRunner = std::function<int()>;
CommandRunner AddRegisterCommand(CLI::App& app);
CommandRunner AddLsCommand(CLI::App& app);
CommandRunner AddBenchCommand(CLI::App& app);
CommandRunner AddProxyCommand(CLI::App& app);
CommandRunner AddXdsCommand(CLI::App& app);

}  // namespace sluice::cli
