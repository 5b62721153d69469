#include "js_error.h"

#include "addon_data.h"
#include "args.h"

namespace vring::binding {

Napi::Error ToJsError(Napi::Env env, vring::ErrorCode code, const std::string& message) {
  return ToJsError(env, vring::Error(code, message));
}

Napi::Error ToJsError(Napi::Env env, const vring::Error& e) {
  auto* data = env.GetInstanceData<AddonData>();
  Napi::Value errnum = e.errnum() ? Napi::Value(Napi::Number::New(env, e.errnum())) : env.Undefined();
  Napi::Value syscall = e.syscall() ? Napi::Value(Napi::String::New(env, e.syscall())) : env.Undefined();
  Napi::Value reason = e.reason() ? Napi::Value(Napi::String::New(env, e.reason())) : env.Undefined();
  if (data && !data->error_factory.IsEmpty()) {
    Napi::Value err = data->error_factory.Call({Napi::String::New(env, ErrorCodeName(e.code())),
                                                Napi::String::New(env, e.what()), errnum, syscall, reason});
    if (err.IsObject()) return Napi::Error(env, err);
  }
  Napi::Error err = Napi::Error::New(env, e.what());
  err.Set("code", Napi::String::New(env, ErrorCodeName(e.code())));
  return err;
}

static Napi::Value SetErrorFactory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  env.GetInstanceData<AddonData>()->error_factory = Napi::Persistent(ArgFunction(env, info[0], "factory"));
  return env.Undefined();
}

void InitErrors(Napi::Env env, Napi::Object exports) {
  exports.Set("setErrorFactory", Napi::Function::New(env, SetErrorFactory, "setErrorFactory"));
}

}  // namespace vring::binding
