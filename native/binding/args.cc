#include "args.h"

#include <cmath>

#include "js_error.h"

namespace vring::binding {

namespace {
[[noreturn]] void Invalid(Napi::Env env, const char* name, const char* what) {
  throw ToJsError(env, ErrorCode::kInvalidArgument, std::string(name) + " must be " + what);
}
}  // namespace

uint64_t ArgU64(Napi::Env env, const Napi::Value& v, const char* name) {
  // One napi_typeof, then the value: the data path converts several numbers per call, and
  // IsBigInt() followed by IsNumber() asked for the type twice.
  napi_valuetype type = napi_undefined;
  if (napi_typeof(env, v, &type) != napi_ok) Invalid(env, name, "a non-negative integer");
  if (type == napi_bigint) {
    bool lossless = false;
    const uint64_t value = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) Invalid(env, name, "a BigInt between 0 and 2^64-1");
    return value;
  }
  if (type != napi_number) Invalid(env, name, "a non-negative integer");
  double d = 0;
  if (napi_get_value_double(env, v, &d) != napi_ok) Invalid(env, name, "a non-negative integer");
  if (!(d >= 0) || d > 9007199254740991.0 || std::floor(d) != d) Invalid(env, name, "a non-negative safe integer");
  return static_cast<uint64_t>(d);
}

uint32_t ArgU32(Napi::Env env, const Napi::Value& v, const char* name) {
  const uint64_t value = ArgU64(env, v, name);
  if (value > UINT32_MAX) Invalid(env, name, "below 2^32");
  return static_cast<uint32_t>(value);
}

int ArgFd(Napi::Env env, const Napi::Value& v, const char* name) {
  if (v.IsNumber() || v.IsBigInt()) {
    const uint64_t value = ArgU64(env, v, name);
    if (value <= INT32_MAX) return static_cast<int>(value);
  }
  Invalid(env, name, "a file descriptor (a non-negative integer)");
}

Bytes ArgBytes(Napi::Env env, const Napi::Value& v, const char* name) {
  // The raw call avoids materialising the ArrayBuffer object, and it doubles as the type
  // check (it fails for anything but a TypedArray): this runs on every data-path call.
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr) == napi_ok) {
    size_t element = 1;
    switch (type) {
      case napi_int16_array: case napi_uint16_array: element = 2; break;
      case napi_int32_array: case napi_uint32_array: case napi_float32_array: element = 4; break;
      case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: element = 8; break;
      default: element = 1;
    }
    return {static_cast<uint8_t*>(data), length * element};
  }
  if (v.IsDataView()) {
    auto d = v.As<Napi::DataView>();
    return {static_cast<uint8_t*>(d.ArrayBuffer().Data()) + d.ByteOffset(), d.ByteLength()};
  }
  Invalid(env, name, "a Buffer, TypedArray or DataView");
}

uint32_t* ArgU32Array(Napi::Env env, const Napi::Value& v, const char* name, size_t* length) {
  napi_typedarray_type type;
  void* data = nullptr;
  if (napi_get_typedarray_info(env, v, &type, length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_uint32_array) {
    Invalid(env, name, "a Uint32Array");
  }
  return static_cast<uint32_t*>(data);
}

}  // namespace vring::binding
