// libFuzzer target: the registry value parser sees whatever any tool wrote into etcd. It must
// never crash, and what it accepts must survive a round trip through the encoder.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "sluice/core/naming_value.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string value(reinterpret_cast<const char*>(data), size);
  auto endpoint = sluice::ParseNamingValue("services/fuzz/instance", value);
  if (!endpoint.ok()) return 0;
  // Accepted: encoding it and reading it back gives the same endpoint.
  const std::string encoded = sluice::EncodeNamingValue(*endpoint);
  auto again = sluice::ParseNamingValue("services/fuzz/instance", encoded);
  if (!again.ok() || again->address != endpoint->address || again->weight != endpoint->weight ||
      again->draining != endpoint->draining || again->zone != endpoint->zone) {
    std::abort();
  }
  return 0;
}
