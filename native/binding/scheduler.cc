// The scheduler calls a JavaScript poll loop needs: a spinning thread gives its core away
// for a moment so that a runnable peer sharing that core is not held off until the kernel
// preempts the spinner (milliseconds later).
#include <napi.h>

#include "vring/spin_wait.h"

namespace vring::binding {

void InitScheduler(Napi::Env env, Napi::Object exports) {
  exports.Set("yieldCpu", Napi::Function::New(
                              env, [](const Napi::CallbackInfo&) { vring::YieldCpu(); },
                              "yieldCpu"));
}

}  // namespace vring::binding
