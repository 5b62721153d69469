// Turns native failures into JS VringError instances. The TS layer registers the
// VringError factory once per environment (worker threads each have their own).
#pragma once

#include <napi.h>

#include "vring/error.h"

namespace vring::binding {

// Builds the JS error for `e`. Throwing the result from a binding method rejects into JS.
Napi::Error ToJsError(Napi::Env env, const vring::Error& e);
Napi::Error ToJsError(Napi::Env env, vring::ErrorCode code, const std::string& message);

// Registers `setErrorFactory(fn)` on exports.
void InitErrors(Napi::Env env, Napi::Object exports);

}  // namespace vring::binding

// Every binding method body goes between these, so any vring::Error becomes a
// VringError in JS and nothing escapes as a C++ exception into Node.
#define VRING_TRY try {
#define VRING_CATCH(env)                                      \
  }                                                           \
  catch (const vring::Error& vring_error_) {                  \
    throw ::vring::binding::ToJsError((env), vring_error_);   \
  }                                                           \
  catch (const std::bad_alloc&) {                             \
    throw ::vring::binding::ToJsError((env), ::vring::ErrorCode::kSystem, "out of memory"); \
  }
