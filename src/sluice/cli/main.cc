// `sluice`: the command-line entry point. Subcommands live in *_command.cc.
#include <cstdio>
#include <map>
#include <string>

#include "sluice/cli/commands.h"
#include "sluice/core/signals.h"

int main(int argc, char** argv) {
  // Before any thread exists, so SIGTERM/SIGINT reach only the command's own wait.
  sluice::BlockTerminationSignals();

  CLI::App app{"Sluice: per-call gRPC load balancing with an etcd registry."};
  app.require_subcommand(1);
  std::map<std::string, sluice::cli::CommandRunner> runners;
  runners["register"] = sluice::cli::AddRegisterCommand(app);
  runners["ls"] = sluice::cli::AddLsCommand(app);
  runners["bench"] = sluice::cli::AddBenchCommand(app);
  runners["proxy"] = sluice::cli::AddProxyCommand(app);
  runners["xds"] = sluice::cli::AddXdsCommand(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "sluice: %s\nRun 'sluice --help' or 'sluice COMMAND --help' for usage.\n",
                 e.what());
    return sluice::cli::kExitUsage;
  }
  for (CLI::App* sub : app.get_subcommands()) {
    return runners.at(sub->get_name())();
  }
  return sluice::cli::kExitUsage;
}
