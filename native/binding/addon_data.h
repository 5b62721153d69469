// The addon's state for one Node environment (the main thread and each worker have their own),
// kept as the environment's instance data so it is freed with the environment.
#pragma once

#include <napi.h>

namespace vring::binding {

struct AddonData {
  // Builds VringError instances; the TS layer registers it once per environment.
  Napi::FunctionReference error_factory;
  // SharedRegion, so a region argument can be told apart from any other object.
  Napi::FunctionReference region_constructor;
  // UnixConnection, which listeners and unixConnect instantiate.
  Napi::FunctionReference connection_constructor;
};

}  // namespace vring::binding
