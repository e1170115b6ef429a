#include "sluice/balancer/picker.h"

namespace sluice {

Picker::~Picker() = default;

}  // namespace sluice
