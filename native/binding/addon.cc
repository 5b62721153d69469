// Entry point of the vring addon: one init per environment (main thread or worker).
#include <napi.h>

#include "addon_data.h"
#include "js_error.h"

namespace vring::binding {
void InitRegion(Napi::Env env, Napi::Object exports);
void InitQueuePairs(Napi::Env env, Napi::Object exports);
void InitEventFd(Napi::Env env, Napi::Object exports);
void InitUnixConnection(Napi::Env env, Napi::Object exports);
void InitUnixListener(Napi::Env env, Napi::Object exports);
void InitScheduler(Napi::Env env, Napi::Object exports);
void InitPooledCopy(Napi::Env env, Napi::Object exports);
}  // namespace vring::binding

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace vring::binding;
  env.SetInstanceData(new AddonData());
  InitErrors(env, exports);
  InitRegion(env, exports);
  InitQueuePairs(env, exports);
  InitEventFd(env, exports);
  InitUnixConnection(env, exports);
  InitUnixListener(env, exports);
  InitScheduler(env, exports);
  InitPooledCopy(env, exports);
  return exports;
}

NODE_API_MODULE(vring, Init)
