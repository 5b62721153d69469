// Argument checks shared by the binding methods: every value from JS is checked before
// it reaches the core, and a bad one becomes ERR_VRING_INVALID_ARGUMENT naming it.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

namespace vring::binding {

struct Bytes {
  uint8_t* data;
  size_t size;
};

// A non-negative safe integer (Number) or a BigInt that fits 64 bits.
uint64_t ArgU64(Napi::Env env, const Napi::Value& v, const char* name);
uint32_t ArgU32(Napi::Env env, const Napi::Value& v, const char* name);
int ArgFd(Napi::Env env, const Napi::Value& v, const char* name);
// Any ArrayBufferView's bytes.
Bytes ArgBytes(Napi::Env env, const Napi::Value& v, const char* name);
// A Uint32Array's elements.
uint32_t* ArgU32Array(Napi::Env env, const Napi::Value& v, const char* name, size_t* length);

}  // namespace vring::binding
