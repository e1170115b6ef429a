#include "raw_h2_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace sluice::testing {
namespace {

struct State {
  RawResponse response;
  int32_t stream_id = 0;
  int header_blocks = 0;
  const std::string* body = nullptr;
  size_t body_off = 0;
};

int OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
             const uint8_t* value, size_t valuelen, uint8_t, void* ud) {
  auto* s = static_cast<State*>(ud);
  std::pair<std::string, std::string> h(
      std::string(reinterpret_cast<const char*>(name), namelen),
      std::string(reinterpret_cast<const char*>(value), valuelen));
  if (frame->headers.cat == NGHTTP2_HCAT_HEADERS && s->header_blocks > 0) {
    s->response.trailers.push_back(std::move(h));
  } else {
    s->response.headers.push_back(std::move(h));
  }
  return 0;
}
int OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
  auto* s = static_cast<State*>(ud);
  if (frame->hd.type == NGHTTP2_HEADERS && frame->hd.stream_id == s->stream_id) ++s->header_blocks;
  return 0;
}
int OnData(nghttp2_session*, uint8_t, int32_t, const uint8_t* data, size_t len, void* ud) {
  static_cast<State*>(ud)->response.body.append(reinterpret_cast<const char*>(data), len);
  return 0;
}
int OnClose(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* ud) {
  auto* s = static_cast<State*>(ud);
  if (stream_id != s->stream_id) return 0;
  s->response.closed = true;
  s->response.rst_error = error_code;
  s->response.reset = error_code != 0;
  return 0;
}
ssize_t ReadBody(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                 nghttp2_data_source*, void* ud) {
  auto* s = static_cast<State*>(ud);
  const size_t n = std::min(length, s->body->size() - s->body_off);
  memcpy(buf, s->body->data() + s->body_off, n);
  s->body_off += n;
  if (s->body_off == s->body->size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

}  // namespace

std::string RawResponse::Header(const std::string& name) const {
  for (const auto& h : headers) {
    if (h.first == name) return h.second;
  }
  for (const auto& h : trailers) {
    if (h.first == name) return h.second;
  }
  return "";
}

std::string GrpcFrame(const std::string& payload) {
  std::string frame(5, '\0');
  const uint32_t n = htonl(static_cast<uint32_t>(payload.size()));
  memcpy(&frame[1], &n, 4);
  return frame + payload;
}

absl::StatusOr<RawResponse> RawHttp2Request(
    int port, const std::vector<std::pair<std::string, std::string>>& headers,
    const std::string& body, absl::Duration timeout) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("connect to port ", port, " failed"));
  }
  State state;
  state.body = &body;
  nghttp2_session_callbacks* cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_header_callback(cbs, OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, OnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, OnData);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, OnClose);
  nghttp2_session* session;
  nghttp2_session_client_new(&session, cbs, &state);
  nghttp2_session_callbacks_del(cbs);
  nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, nullptr, 0);
  std::vector<nghttp2_nv> nva;
  for (const auto& [name, value] : headers) {
    nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                   reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                   value.size(), NGHTTP2_NV_FLAG_NONE});
  }
  nghttp2_data_provider provider{};
  provider.read_callback = ReadBody;
  state.stream_id = nghttp2_submit_request(session, nullptr, nva.data(), nva.size(),
                                           body.empty() ? nullptr : &provider, nullptr);
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status error = absl::OkStatus();
  while (!state.response.closed && absl::Now() < deadline) {
    for (;;) {
      const uint8_t* data;
      const ssize_t n = nghttp2_session_mem_send(session, &data);
      if (n <= 0) break;
      if (send(fd, data, n, MSG_NOSIGNAL) != n) break;
    }
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    uint8_t buf[16384];
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) {
      error = absl::UnavailableError("the proxy closed the connection");
      break;
    }
    if (nghttp2_session_mem_recv(session, buf, n) < 0) {
      error = absl::InternalError("bad HTTP/2 from the proxy");
      break;
    }
  }
  nghttp2_session_del(session);
  close(fd);
  if (!error.ok() && !state.response.closed) return error;
  return state.response;
}

}  // namespace sluice::testing
