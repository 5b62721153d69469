// JS handle for one connected fd-passing Unix stream socket ("UnixConnection"). unixConnect()
// and listeners create them; JS cannot, so an fd never travels as a bare number JS could drop.
#pragma once

#include <napi.h>

#include "vring/unique_fd.h"
#include "vring/unix_socket.h"

namespace vring::binding {

// Framing of one connection. With add_header the binding writes the header on send and strips
// it on receive, so JS deals in payloads; without it JS sends and receives whole frames.
struct ConnectionConfig {
  vring::FramingOptions framing;
  bool add_header = false;
};

// The connection options argument: { maxPayload, headerSize, lengthOffset, addHeader }, with
// the vhost-user defaults for absent fields (or an absent object).
ConnectionConfig ArgConnectionConfig(Napi::Env env, const Napi::Value& v);

// A UnixConnection that owns `fd`. If it throws, `fd` is closed.
Napi::Object NewUnixConnection(Napi::Env env, vring::UniqueFd fd, const ConnectionConfig& config);

// Exports UnixConnection and unixConnect(path, options).
void InitUnixConnection(Napi::Env env, Napi::Object exports);

}  // namespace vring::binding
