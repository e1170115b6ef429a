// The proxy benchmark's backend: a Greeter that answers SayHello like greeter_server ("Hello,
// <name>!, I am <ip>:<port>") and can also make its reply large, so the same three backends
// serve small calls, 1 MiB responses and 1 MiB requests.
//
// It handles the call as raw bytes (no protobuf parse or serialize): at 1 MiB per call the
// backend's own copies would otherwise take CPU that the proxies under test need. A request
// may carry any bytes after its name (an unknown field the Greeter ignores), which is how the
// benchmark makes large requests. A request with the header `bench-reply-bytes: N` gets a
// HelloReply of exactly N bytes: the usual message plus a padding field (15, bytes) that a
// HelloReply parser skips; the padding points at one shared zero buffer, so a large reply costs
// the backend no copy.
//
//   build/bench/bench_greeter --ip 127.0.0.11 --port 50051
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "helloworld.grpc.pb.h"
#include "sluice/core/signals.h"

namespace {

constexpr char kReplyBytesHeader[] = "bench-reply-bytes";
constexpr size_t kMaxReplyBytes = 64 << 20;
constexpr uint8_t kNameKey = (1 << 3) | 2;      // HelloRequest.name, length-delimited
constexpr uint8_t kMessageKey = (2 << 3) | 2;   // HelloReply.message, length-delimited
constexpr uint8_t kPaddingKey = (15 << 3) | 2;  // unknown to the Greeter's proto: skipped

void AppendVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

size_t VarintSize(uint64_t value) {
  size_t size = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++size;
  }
  return size;
}

// The name field at the start of a serialized HelloRequest; reads only the first bytes, across
// slice boundaries, so a 1 MiB request is never copied.
absl::StatusOr<std::string> LeadingName(const grpc::ByteBuffer& request) {
  std::vector<grpc::Slice> slices;
  if (!request.Dump(&slices).ok()) return absl::InvalidArgumentError("unreadable request");
  std::string head;
  for (const grpc::Slice& slice : slices) {
    const size_t want = 2 + 5 + 256 - head.size();  // key, length varint, a short name
    head.append(reinterpret_cast<const char*>(slice.begin()), std::min(want, slice.size()));
    if (head.size() >= 2 + 5 + 256) break;
  }
  if (head.empty()) return std::string();  // proto3: an empty HelloRequest has an empty name
  if (static_cast<uint8_t>(head[0]) != kNameKey) {
    return absl::InvalidArgumentError("the request must start with HelloRequest.name (field 1)");
  }
  uint64_t length = 0;
  size_t pos = 1;
  for (int shift = 0; pos < head.size() && shift < 35; shift += 7) {
    const uint8_t byte = static_cast<uint8_t>(head[pos++]);
    length |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) {
      if (length > head.size() - pos) {
        return absl::InvalidArgumentError("HelloRequest.name longer than 256 bytes or truncated");
      }
      return head.substr(pos, length);
    }
  }
  return absl::InvalidArgumentError("HelloRequest.name: bad length");
}

// The padding field's length that makes a reply of `base` bytes exactly `total` bytes long, or
// nothing when `total` is too close to `base` to fit a field (key + length + bytes).
std::optional<size_t> PaddingLength(size_t base, size_t total) {
  if (total < base + 2) return std::nullopt;
  for (size_t varint = 1; varint <= 5; ++varint) {
    if (total < base + 1 + varint) break;
    const size_t length = total - base - 1 - varint;
    if (VarintSize(length) == varint) return length;
  }
  return std::nullopt;
}

class BenchGreeter final : public Greeter::WithRawCallbackMethod_SayHello<Greeter::Service> {
 public:
  explicit BenchGreeter(std::string identity)
      : identity_(std::move(identity)),
        zeros_(static_cast<char*>(std::calloc(kMaxReplyBytes, 1))) {}
  ~BenchGreeter() override { std::free(zeros_); }

  grpc::ServerUnaryReactor* SayHello(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(Answer(*context, *request, response));
    return reactor;
  }

 private:
  grpc::Status Answer(grpc::CallbackServerContext& context, const grpc::ByteBuffer& request,
                      grpc::ByteBuffer* response) {
    context.AddInitialMetadata("sluice-backend", identity_);
    absl::StatusOr<std::string> name = LeadingName(request);
    if (!name.ok()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(name.status().message()));
    }
    const std::string message = absl::StrCat("Hello, ", *name, "!, I am ", identity_);
    std::string head;
    head.push_back(static_cast<char>(kMessageKey));
    AppendVarint(message.size(), &head);
    head += message;

    size_t wanted = 0;
    if (auto it = context.client_metadata().find(kReplyBytesHeader);
        it != context.client_metadata().end()) {
      if (!absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &wanted) ||
          wanted > kMaxReplyBytes) {
        return grpc::Status(
            grpc::StatusCode::INVALID_ARGUMENT,
            absl::StrCat(kReplyBytesHeader, " must be a byte count up to ", kMaxReplyBytes));
      }
    }
    std::optional<size_t> padding;
    if (wanted > head.size()) {
      padding = PaddingLength(head.size(), wanted);
      if (!padding) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            absl::StrCat(kReplyBytesHeader, " ", wanted, " is too close to the ",
                                         head.size(), "-byte reply to pad; ask for more"));
      }
      head.push_back(static_cast<char>(kPaddingKey));
      AppendVarint(*padding, &head);
    }
    grpc::Slice slices[2] = {grpc::Slice(head),
                             grpc::Slice(zeros_, padding.value_or(0), grpc::Slice::STATIC_SLICE)};
    *response = grpc::ByteBuffer(slices, padding ? 2 : 1);
    return grpc::Status::OK;
  }

  const std::string identity_;
  char* const zeros_;  // calloc'd: untouched pages cost no memory
};

}  // namespace

int main(int argc, char** argv) {
  sluice::BlockTerminationSignals();
  CLI::App app{"The proxy benchmark's Greeter backend (small or large replies, raw bytes)"};
  std::string ip = "127.0.0.1";
  int port = 0;
  app.add_option("--ip", ip, "Loopback address to listen on")->capture_default_str();
  app.add_option("--port", port, "Port to listen on")->required();
  CLI11_PARSE(app, argc, argv);
  if (port <= 0 || port > 65535) {
    std::fprintf(stderr, "bench_greeter: --port must be 1-65535, got %d\n", port);
    return 2;
  }
  if (ip.rfind("127.", 0) != 0) {
    std::fprintf(stderr, "bench_greeter: --ip must be a loopback address (127.x.y.z), got %s\n",
                 ip.c_str());
    return 2;
  }
  const std::string address = absl::StrCat(ip, ":", port);
  BenchGreeter service(address);
  grpc::ServerBuilder builder;
  // Refuse an address another process holds instead of silently sharing it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(static_cast<int>(kMaxReplyBytes));
  int bound_port = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound_port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) {
    std::fprintf(stderr, "bench_greeter: cannot listen on %s (in use, or not a local address)\n",
                 address.c_str());
    return 1;
  }
  std::fprintf(stderr, "bench_greeter: listening on %s\n", address.c_str());
  sluice::WaitForTerminationSignal();
  server->Shutdown();
  return 0;
}
