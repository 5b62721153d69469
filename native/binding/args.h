// Argument checks shared by the binding methods: every value from JS is checked before
// it reaches the core, and a bad one becomes ERR_VRING_INVALID_ARGUMENT naming it.
// "Absent" means undefined or null: how JS leaves out an optional argument or option.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace vring::binding {

struct Bytes {
  uint8_t* data;
  size_t size;
};

// Throws ERR_VRING_INVALID_ARGUMENT "<name> must be <what>", for checks that span arguments
// or need a type of their own (e.g. an instance of a wrapped class).
[[noreturn]] void ThrowInvalidArgument(Napi::Env env, const std::string& name, const std::string& what);

bool IsAbsent(const Napi::Value& v);

// A non-negative safe integer (Number) or a BigInt that fits 64 bits.
uint64_t ArgU64(Napi::Env env, const Napi::Value& v, const char* name);
uint64_t ArgOptionalU64(Napi::Env env, const Napi::Value& v, const char* name, uint64_t fallback);
uint32_t ArgU32(Napi::Env env, const Napi::Value& v, const char* name);
uint32_t ArgOptionalU32(Napi::Env env, const Napi::Value& v, const char* name, uint32_t fallback);
uint16_t ArgU16(Napi::Env env, const Napi::Value& v, const char* name);
int ArgFd(Napi::Env env, const Napi::Value& v, const char* name);
// -1 when absent.
int ArgOptionalFd(Napi::Env env, const Napi::Value& v, const char* name);
// An Array of at most `max` fds (checked before any element is read); empty when absent.
std::vector<int> ArgFdList(Napi::Env env, const Napi::Value& v, const char* name, size_t max);
// true or false; no other value is taken for either.
bool ArgBool(Napi::Env env, const Napi::Value& v, const char* name);
bool ArgOptionalBool(Napi::Env env, const Napi::Value& v, const char* name, bool fallback);
std::string ArgString(Napi::Env env, const Napi::Value& v, const char* name);
std::string ArgOptionalString(Napi::Env env, const Napi::Value& v, const char* name, const char* fallback);
Napi::Object ArgObject(Napi::Env env, const Napi::Value& v, const char* name);
Napi::Array ArgArray(Napi::Env env, const Napi::Value& v, const char* name);
Napi::Function ArgFunction(Napi::Env env, const Napi::Value& v, const char* name);
// Any ArrayBufferView's bytes, or a whole ArrayBuffer's.
Bytes ArgBytes(Napi::Env env, const Napi::Value& v, const char* name);
// A Uint32Array's elements.
uint32_t* ArgU32Array(Napi::Env env, const Napi::Value& v, const char* name, size_t* length);
// A Float64Array's elements (written in place by the caller).
double* ArgF64Array(Napi::Env env, const Napi::Value& v, const char* name, size_t* length);

}  // namespace vring::binding
