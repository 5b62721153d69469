// JS handle for a SharedRegion. Exposed so the queue-pair wraps can take a region
// argument and share its mapping.
#pragma once

#include <napi.h>

#include <optional>
#include <string>

#include "vring/shared_region.h"

namespace vring::binding {

class RegionWrap : public Napi::ObjectWrap<RegionWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit RegionWrap(const Napi::CallbackInfo& info);

  // The region behind the JS argument `name`; throws ERR_VRING_INVALID_ARGUMENT if it is not
  // a SharedRegion and ERR_VRING_CLOSED if it is closed.
  static SharedRegion& FromValue(Napi::Env env, Napi::Value value, const std::string& name);

 private:
  static Napi::Value Create(const Napi::CallbackInfo& info);
  static Napi::Value Map(const Napi::CallbackInfo& info);
  Napi::Value Fd(const Napi::CallbackInfo& info);
  Napi::Value Size(const Napi::CallbackInfo& info);
  Napi::Value Address(const Napi::CallbackInfo& info);
  Napi::Value Read(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  SharedRegion& Open(Napi::Env env);

  std::optional<SharedRegion> region_;
};

}  // namespace vring::binding
