#include "sluice/etcd/etcd_client.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "sluice/core/address.h"
#include "sluice/etcd/etcd_members.h"
#include "sluice/etcd/etcd_watch.h"

namespace sluice::etcd {

absl::StatusOr<std::vector<std::string>> ParseEtcdEndpoints(absl::string_view text, bool* https) {
  const absl::string_view kExample = "; expected host:port[,host:port...], e.g. 127.0.0.1:2379";
  if (absl::StripAsciiWhitespace(text).empty()) {
    return absl::InvalidArgumentError(absl::StrCat("no etcd endpoints given", kExample));
  }
  std::vector<std::string> endpoints;
  int position = 0;
  bool saw_https = false;
  bool saw_http = false;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    ++position;
    absl::string_view original = part;
    part = absl::StripAsciiWhitespace(part);
    if (part.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("etcd endpoint #", position, " in '", text, "' is empty", kExample));
    }
    const bool part_https = absl::StartsWithIgnoreCase(part, "https://");
    const bool part_http = absl::StartsWithIgnoreCase(part, "http://");
    if (part_https || part_http) part.remove_prefix(part_https ? 8 : 7);
    if (part_https) saw_https = true;
    if (part_http) saw_http = true;
    if (saw_https && saw_http) {
      return absl::InvalidArgumentError(
          absl::StrCat("etcd endpoints '", text,
                       "' mix http:// and https://: every member is reached the same way"));
    }
    absl::ConsumeSuffix(&part, "/");
    if (part.find('/') != absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("etcd endpoint '", absl::StripAsciiWhitespace(original),
                       "' has a path; give only host:port", kExample));
    }
    absl::StatusOr<HostPort> parsed = ParseHostPort(part);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("etcd endpoint #", position, ": ", parsed.status().message()));
    }
    std::string normalized = parsed->ToString();
    if (std::find(endpoints.begin(), endpoints.end(), normalized) != endpoints.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("etcd endpoint '", normalized, "' is listed twice in '", text, "'"));
    }
    endpoints.push_back(std::move(normalized));
  }
  if (https != nullptr) *https = saw_https;
  return endpoints;
}

std::string PrefixRangeEnd(absl::string_view prefix) {
  std::string end(prefix);
  // Increment the last byte that can be incremented and drop what follows it: the smallest
  // key greater than every key starting with `prefix`.
  while (!end.empty()) {
    unsigned char last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  // No such key (empty prefix or all 0xff): "\0" means "to the end of the keyspace".
  return std::string(1, '\0');
}

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Create(EtcdClientOptions options) {
  if (options.endpoints.empty()) {
    return absl::InvalidArgumentError(
        "no etcd endpoints: give at least one etcd member as host:port, e.g. 127.0.0.1:2379");
  }
  for (std::string& endpoint : options.endpoints) {
    absl::StatusOr<HostPort> parsed = ParseHostPort(endpoint);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("etcd endpoint: ", parsed.status().message()));
    }
    endpoint = parsed->ToString();
  }
  if (options.call_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("etcd call_timeout is ",
                                                   absl::FormatDuration(options.call_timeout),
                                                   ": it must be positive, e.g. 2s"));
  }
  if (options.username.empty() && !options.password.empty()) {
    return absl::InvalidArgumentError("etcd password given without a username: set both");
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      MakeCredentials(options.tls);
  if (!credentials.ok()) return credentials.status();
  return std::unique_ptr<EtcdClient>(
      new EtcdClient(std::make_shared<EtcdMembers>(std::move(options), *credentials)));
}

EtcdClient::EtcdClient(std::shared_ptr<EtcdMembers> members) : members_(std::move(members)) {}

EtcdClient::~EtcdClient() = default;

const std::vector<std::string>& EtcdClient::endpoints() const { return members_->options().endpoints; }

absl::StatusOr<RangeResult> EtcdClient::Get(absl::string_view key) {
  pb::RangeRequest request;
  request.set_key(std::string(key));
  auto response = members_->Call<pb::RangeResponse>(
      "Get", key, std::nullopt, [&](Member& m, grpc::ClientContext& c, pb::RangeResponse& r) {
        return m.kv->Range(&c, request, &r);
      });
  if (!response.ok()) return response.status();
  RangeResult result;
  result.revision = response->header().revision();
  for (const auto& kv : response->kvs()) result.kvs.push_back(FromProto(kv));
  return result;
}

absl::StatusOr<RangeResult> EtcdClient::GetPrefix(absl::string_view prefix) {
  pb::RangeRequest request;
  request.set_key(RangeStart(prefix));
  request.set_range_end(PrefixRangeEnd(prefix));
  auto response =
      members_->Call<pb::RangeResponse>("GetPrefix", prefix, std::nullopt,
                                     [&](Member& m, grpc::ClientContext& c, pb::RangeResponse& r) {
                                       return m.kv->Range(&c, request, &r);
                                     });
  if (!response.ok()) return response.status();
  RangeResult result;
  result.revision = response->header().revision();
  result.kvs.reserve(response->kvs_size());
  for (const auto& kv : response->kvs()) result.kvs.push_back(FromProto(kv));
  return result;
}

absl::StatusOr<int64_t> EtcdClient::Put(absl::string_view key, absl::string_view value,
                                        int64_t lease_id) {
  pb::PutRequest request;
  request.set_key(std::string(key));
  request.set_value(std::string(value));
  request.set_lease(lease_id);
  auto response = members_->Call<pb::PutResponse>(
      "Put", key, std::nullopt, [&](Member& m, grpc::ClientContext& c, pb::PutResponse& r) {
        return m.kv->Put(&c, request, &r);
      });
  if (!response.ok()) return response.status();
  return response->header().revision();
}

absl::StatusOr<int64_t> EtcdClient::Delete(absl::string_view key) {
  pb::DeleteRangeRequest request;
  request.set_key(std::string(key));
  auto response = members_->Call<pb::DeleteRangeResponse>(
      "Delete", key, std::nullopt,
      [&](Member& m, grpc::ClientContext& c, pb::DeleteRangeResponse& r) {
        return m.kv->DeleteRange(&c, request, &r);
      });
  if (!response.ok()) return response.status();
  return response->deleted();
}

absl::StatusOr<int64_t> EtcdClient::DeletePrefix(absl::string_view prefix) {
  pb::DeleteRangeRequest request;
  request.set_key(RangeStart(prefix));
  request.set_range_end(PrefixRangeEnd(prefix));
  auto response = members_->Call<pb::DeleteRangeResponse>(
      "DeletePrefix", prefix, std::nullopt,
      [&](Member& m, grpc::ClientContext& c, pb::DeleteRangeResponse& r) {
        return m.kv->DeleteRange(&c, request, &r);
      });
  if (!response.ok()) return response.status();
  return response->deleted();
}

absl::Status EtcdClient::Compact(int64_t revision) {
  pb::CompactionRequest request;
  request.set_revision(revision);
  request.set_physical(true);
  auto response = members_->Call<pb::CompactionResponse>(
      absl::StrCat("Compact to revision ", revision), "", std::nullopt,
      [&](Member& m, grpc::ClientContext& c, pb::CompactionResponse& r) {
        return m.kv->Compact(&c, request, &r);
      });
  return response.status();
}

absl::StatusOr<Lease> EtcdClient::LeaseGrant(int64_t ttl_seconds) {
  pb::LeaseGrantRequest request;
  request.set_ttl(ttl_seconds);
  auto response = members_->Call<pb::LeaseGrantResponse>(
      absl::StrCat("LeaseGrant ttl=", ttl_seconds, "s"), "", std::nullopt,
      [&](Member& m, grpc::ClientContext& c, pb::LeaseGrantResponse& r) {
        return m.lease->LeaseGrant(&c, request, &r);
      });
  if (!response.ok()) return response.status();
  if (!response->error().empty()) {
    return absl::InternalError(
        absl::StrCat("etcd LeaseGrant ttl=", ttl_seconds, "s: ", response->error()));
  }
  return Lease{response->id(), response->ttl()};
}

absl::Status EtcdClient::LeaseRevoke(int64_t lease_id, std::optional<absl::Duration> timeout) {
  pb::LeaseRevokeRequest request;
  request.set_id(lease_id);
  auto response = members_->Call<pb::LeaseRevokeResponse>(
      absl::StrCat("LeaseRevoke lease=", absl::Hex(lease_id)), "", timeout,
      [&](Member& m, grpc::ClientContext& c, pb::LeaseRevokeResponse& r) {
        return m.lease->LeaseRevoke(&c, request, &r);
      });
  return response.status();
}

absl::StatusOr<int64_t> EtcdClient::LeaseKeepAliveOnce(int64_t lease_id) {
  const std::string op = absl::StrCat("LeaseKeepAlive lease=", absl::Hex(lease_id));
  auto response = members_->Call<pb::LeaseKeepAliveResponse>(
      op, "", std::nullopt, [&](Member& m, grpc::ClientContext& c, pb::LeaseKeepAliveResponse& r) {
        // A short-lived stream: one request, one answer, then close. The context's deadline
        // bounds the whole exchange.
        auto stream = m.lease->LeaseKeepAlive(&c);
        pb::LeaseKeepAliveRequest request;
        request.set_id(lease_id);
        bool answered = stream->Write(request) && stream->Read(&r);
        // After WritesDone etcd ends the stream; if Write or Read failed it has ended already.
        if (answered) stream->WritesDone();
        grpc::Status status = stream->Finish();
        if (answered) return grpc::Status::OK;
        if (status.ok()) {
          return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                              "keep-alive stream closed without an answer");
        }
        return status;
      });
  if (!response.ok()) return response.status();
  if (response->ttl() <= 0) {
    return absl::NotFoundError(
        absl::StrCat("etcd ", op, ": the lease no longer exists (expired or revoked)"));
  }
  return response->ttl();
}

std::unique_ptr<EtcdWatch> EtcdClient::WatchPrefix(
    absl::string_view prefix, int64_t start_revision,
    std::function<void(const WatchUpdate&)> on_update,
    std::function<void(absl::Status status, int64_t compact_revision)> on_end) {
  return StartPrefixWatch(members_, std::string(prefix), start_revision, std::move(on_update),
                          std::move(on_end));
}

}  // namespace sluice::etcd
