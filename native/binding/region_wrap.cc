#include "region_wrap.h"

#include <cstring>

#include "addon_data.h"
#include "args.h"
#include "js_error.h"

namespace vring::binding {

namespace {
// Set while a factory builds an instance, so `new` from JS cannot create empty handles.
thread_local std::optional<SharedRegion>* pending_region = nullptr;
}  // namespace

Napi::Function RegionWrap::Define(Napi::Env env) {
  return DefineClass(env, "NativeSharedRegion",
                     {
                         StaticMethod<&RegionWrap::Create>("create"),
                         StaticMethod<&RegionWrap::Map>("map"),
                         InstanceAccessor<&RegionWrap::Fd>("fd"),
                         InstanceAccessor<&RegionWrap::Size>("size"),
                         InstanceAccessor<&RegionWrap::Address>("address"),
                         InstanceMethod<&RegionWrap::Read>("read"),
                         InstanceMethod<&RegionWrap::Write>("write"),
                         InstanceMethod<&RegionWrap::Close>("close"),
                     });
}

RegionWrap::RegionWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RegionWrap>(info) {
  if (!pending_region) {
    throw ToJsError(info.Env(), ErrorCode::kInvalidArgument, "use SharedRegion.create() or SharedRegion.fromFd()");
  }
  region_ = std::move(*pending_region);
}

static Napi::Value Construct(Napi::Env env, std::optional<SharedRegion> region) {
  auto* data = env.GetInstanceData<AddonData>();
  pending_region = &region;
  Napi::Object obj;
  try {
    obj = data->region_constructor.New({});
  } catch (...) {
    pending_region = nullptr;
    throw;
  }
  pending_region = nullptr;
  return obj;
}

Napi::Value RegionWrap::Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  VRING_TRY
  const uint64_t size = ArgU64(env, info[0], "size");
  const std::string name = ArgOptionalString(env, info[1], "name", "vring");
  return Construct(env, SharedRegion::Create(size, name));
  VRING_CATCH(env)
}

Napi::Value RegionWrap::Map(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  VRING_TRY
  MapOptions options;
  const int fd = ArgFd(env, info[0], "fd");
  options.offset = ArgU64(env, info[1], "offset");
  options.size = ArgU64(env, info[2], "size");
  options.require_shrink_seal = ArgBool(env, info[3], "requireSeal");
  return Construct(env, SharedRegion::Map(fd, options));
  VRING_CATCH(env)
}

SharedRegion& RegionWrap::Open(Napi::Env env) {
  if (!region_) throw ToJsError(env, ErrorCode::kClosed, "shared region is closed");
  return *region_;
}

SharedRegion& RegionWrap::FromValue(Napi::Env env, Napi::Value value, const std::string& name) {
  auto* data = env.GetInstanceData<AddonData>();
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(data->region_constructor.Value())) {
    ThrowInvalidArgument(env, name, "a SharedRegion");
  }
  return Napi::ObjectWrap<RegionWrap>::Unwrap(value.As<Napi::Object>())->Open(env);
}

Napi::Value RegionWrap::Fd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), Open(info.Env()).fd());
}

Napi::Value RegionWrap::Size(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(Open(info.Env()).size()));
}

Napi::Value RegionWrap::Address(const Napi::CallbackInfo& info) {
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(Open(info.Env()).data())));
}

Napi::Value RegionWrap::Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  VRING_TRY
  SharedRegion& r = Open(env);
  const uint64_t offset = ArgU64(env, info[0], "offset");
  const uint64_t length = ArgU64(env, info[1], "length");
  if (offset > r.size() || length > r.size() - offset) {
    throw Error(ErrorCode::kRegionBounds, "read outside the region");
  }
  return Napi::Buffer<uint8_t>::Copy(env, r.data() + offset, length);
  VRING_CATCH(env)
}

Napi::Value RegionWrap::Write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  VRING_TRY
  SharedRegion& r = Open(env);
  const uint64_t offset = ArgU64(env, info[0], "offset");
  const Bytes src = ArgBytes(env, info[1], "data");
  if (offset > r.size() || src.size > r.size() - offset) {
    throw Error(ErrorCode::kRegionBounds, "write outside the region");
  }
  if (src.size > 0) std::memcpy(r.data() + offset, src.data, src.size);
  return env.Undefined();
  VRING_CATCH(env)
}

Napi::Value RegionWrap::Close(const Napi::CallbackInfo& info) {
  // Queue pairs keep the mapping alive through their own reference; only the fd and
  // this handle's claim go away now.
  region_.reset();
  return info.Env().Undefined();
}

void InitRegion(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = RegionWrap::Define(env);
  env.GetInstanceData<AddonData>()->region_constructor = Napi::Persistent(ctor);
  exports.Set("SharedRegion", ctor);
}

}  // namespace vring::binding
