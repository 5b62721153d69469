#include "args.h"

#include <cmath>

#include "js_error.h"

namespace vring::binding {

namespace {

constexpr const char* kNonNegativeInteger = "a non-negative integer";

// One napi_typeof per argument: the data path converts several numbers per call, and the
// Is*() predicates each ask for the type again.
napi_valuetype TypeOf(Napi::Env env, const Napi::Value& v) {
  napi_valuetype type = napi_undefined;
  if (napi_typeof(env, v, &type) != napi_ok) return napi_external;  // no argument type we accept
  return type;
}

bool Absent(napi_valuetype type) { return type == napi_undefined || type == napi_null; }

// ArgU64 once the type is known.
uint64_t U64Of(Napi::Env env, const Napi::Value& v, napi_valuetype type, const char* name) {
  if (type == napi_bigint) {
    bool lossless = false;
    const uint64_t value = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) ThrowInvalidArgument(env, name, "a BigInt between 0 and 2^64-1");
    return value;
  }
  if (type != napi_number) ThrowInvalidArgument(env, name, kNonNegativeInteger);
  double d = 0;
  if (napi_get_value_double(env, v, &d) != napi_ok) ThrowInvalidArgument(env, name, kNonNegativeInteger);
  if (!(d >= 0) || d > 9007199254740991.0 || std::floor(d) != d)
    ThrowInvalidArgument(env, name, "a non-negative safe integer");
  return static_cast<uint64_t>(d);
}

uint32_t U32Of(Napi::Env env, uint64_t value, const char* name) {
  if (value > UINT32_MAX) ThrowInvalidArgument(env, name, "below 2^32");
  return static_cast<uint32_t>(value);
}

// The fd `v` holds, or -1 if it holds none.
int FdOf(Napi::Env env, const Napi::Value& v) {
  const napi_valuetype type = TypeOf(env, v);
  if (type == napi_number) {
    double d = 0;
    if (napi_get_value_double(env, v, &d) == napi_ok && d >= 0 && d <= INT32_MAX && std::floor(d) == d)
      return static_cast<int>(d);
  } else if (type == napi_bigint) {
    bool lossless = false;
    const uint64_t value = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (lossless && value <= INT32_MAX) return static_cast<int>(value);
  }
  return -1;
}

}  // namespace

void ThrowInvalidArgument(Napi::Env env, const std::string& name, const std::string& what) {
  throw ToJsError(env, ErrorCode::kInvalidArgument, name + " must be " + what);
}

bool IsAbsent(const Napi::Value& v) { return Absent(TypeOf(v.Env(), v)); }

uint64_t ArgU64(Napi::Env env, const Napi::Value& v, const char* name) {
  return U64Of(env, v, TypeOf(env, v), name);
}

uint64_t ArgOptionalU64(Napi::Env env, const Napi::Value& v, const char* name, uint64_t fallback) {
  const napi_valuetype type = TypeOf(env, v);
  return Absent(type) ? fallback : U64Of(env, v, type, name);
}

uint32_t ArgU32(Napi::Env env, const Napi::Value& v, const char* name) {
  return U32Of(env, ArgU64(env, v, name), name);
}

uint32_t ArgOptionalU32(Napi::Env env, const Napi::Value& v, const char* name, uint32_t fallback) {
  return U32Of(env, ArgOptionalU64(env, v, name, fallback), name);
}

uint16_t ArgU16(Napi::Env env, const Napi::Value& v, const char* name) {
  const uint64_t value = ArgU64(env, v, name);
  if (value > UINT16_MAX) ThrowInvalidArgument(env, name, "below 2^16");
  return static_cast<uint16_t>(value);
}

int ArgFd(Napi::Env env, const Napi::Value& v, const char* name) {
  const int fd = FdOf(env, v);
  if (fd < 0) ThrowInvalidArgument(env, name, "a file descriptor (a non-negative integer)");
  return fd;
}

int ArgOptionalFd(Napi::Env env, const Napi::Value& v, const char* name) {
  return IsAbsent(v) ? -1 : ArgFd(env, v, name);
}

std::vector<int> ArgFdList(Napi::Env env, const Napi::Value& v, const char* name, size_t max) {
  std::vector<int> fds;
  if (IsAbsent(v)) return fds;
  const Napi::Array array = ArgArray(env, v, name);
  const uint32_t length = array.Length();
  if (length > max)
    ThrowInvalidArgument(env, name, "at most " + std::to_string(max) + " file descriptors, not " +
                                        std::to_string(length));
  fds.reserve(length);
  for (uint32_t i = 0; i < length; ++i) {
    const int fd = FdOf(env, array.Get(i));
    if (fd < 0) ThrowInvalidArgument(env, name, "an array of file descriptors (non-negative integers)");
    fds.push_back(fd);
  }
  return fds;
}

bool ArgBool(Napi::Env env, const Napi::Value& v, const char* name) {
  if (TypeOf(env, v) != napi_boolean) ThrowInvalidArgument(env, name, "true or false");
  return v.As<Napi::Boolean>().Value();
}

bool ArgOptionalBool(Napi::Env env, const Napi::Value& v, const char* name, bool fallback) {
  return IsAbsent(v) ? fallback : ArgBool(env, v, name);
}

std::string ArgString(Napi::Env env, const Napi::Value& v, const char* name) {
  if (TypeOf(env, v) != napi_string) ThrowInvalidArgument(env, name, "a string");
  return v.As<Napi::String>().Utf8Value();
}

std::string ArgOptionalString(Napi::Env env, const Napi::Value& v, const char* name, const char* fallback) {
  return IsAbsent(v) ? std::string(fallback) : ArgString(env, v, name);
}

Napi::Object ArgObject(Napi::Env env, const Napi::Value& v, const char* name) {
  if (!v.IsObject()) ThrowInvalidArgument(env, name, "an object");
  return v.As<Napi::Object>();
}

Napi::Array ArgArray(Napi::Env env, const Napi::Value& v, const char* name) {
  if (!v.IsArray()) ThrowInvalidArgument(env, name, "an array");
  return v.As<Napi::Array>();
}

Napi::Function ArgFunction(Napi::Env env, const Napi::Value& v, const char* name) {
  if (TypeOf(env, v) != napi_function) ThrowInvalidArgument(env, name, "a function");
  return v.As<Napi::Function>();
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
  if (v.IsArrayBuffer()) {
    auto b = v.As<Napi::ArrayBuffer>();
    return {static_cast<uint8_t*>(b.Data()), b.ByteLength()};
  }
  ThrowInvalidArgument(env, name, "a Buffer, TypedArray, DataView or ArrayBuffer");
}

uint32_t* ArgU32Array(Napi::Env env, const Napi::Value& v, const char* name, size_t* length) {
  napi_typedarray_type type;
  void* data = nullptr;
  if (napi_get_typedarray_info(env, v, &type, length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_uint32_array) {
    ThrowInvalidArgument(env, name, "a Uint32Array");
  }
  return static_cast<uint32_t*>(data);
}

double* ArgF64Array(Napi::Env env, const Napi::Value& v, const char* name, size_t* length) {
  napi_typedarray_type type;
  void* data = nullptr;
  if (napi_get_typedarray_info(env, v, &type, length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_float64_array) {
    ThrowInvalidArgument(env, name, "a Float64Array");
  }
  return static_cast<double*>(data);
}

}  // namespace vring::binding
