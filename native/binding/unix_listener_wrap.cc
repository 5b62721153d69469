// JS handle for a listening fd-passing Unix stream socket ("UnixListener"): it accepts
// connections and hands each to JS as a UnixConnection with the framing it was given.
#include <napi.h>

#include <memory>
#include <string>

#include "args.h"
#include "js_error.h"
#include "poll_handle.h"
#include "unix_connection_wrap.h"
#include "vring/unix_socket.h"

namespace vring::binding {

namespace {

// Connections accepted per readiness callback before yielding back to libuv, so a burst of
// connects cannot starve the rest of the loop (uv_poll is level-triggered: it fires again).
constexpr int kMaxAcceptsPerWakeup = 64;

class ListenerWrap : public Napi::ObjectWrap<ListenerWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "UnixListener",
                       {
                           InstanceAccessor<&ListenerWrap::GetClosed>("closed"),
                           InstanceMethod<&ListenerWrap::Start>("start"),
                           InstanceMethod<&ListenerWrap::Ref>("ref"),
                           InstanceMethod<&ListenerWrap::Unref>("unref"),
                           InstanceMethod<&ListenerWrap::Close>("close"),
                       });
  }

  // new UnixListener(path, backlog, connectionOptions, mode?)
  explicit ListenerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ListenerWrap>(info) {
    Napi::Env env = info.Env();
    path_ = ArgString(env, info[0], "path");
    const uint32_t backlog = ArgOptionalU32(env, info[1], "backlog", 128);
    config_ = ArgConnectionConfig(env, info[2]);
    const uint32_t mode = ArgOptionalU32(env, info[3], "mode", vring::kDefaultSocketMode);
    VRING_TRY
    fd_ = vring::ListenUnix(path_, static_cast<int>(backlog < 0x7fffffff ? backlog : 0x7fffffff),
                            &file_id_, static_cast<mode_t>(mode));
    VRING_CATCH(env)
  }

  ~ListenerWrap() override { CloseImpl(); }

 private:
  void RequireOpen(Napi::Env env) const {
    if (!fd_.valid()) throw ToJsError(env, vring::ErrorCode::kClosed, "listener is closed");
  }

  Napi::Value GetClosed(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), !fd_.valid());
  }

  // start(onConnection(connection), onError(error))
  void Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    Napi::Function on_connection = ArgFunction(env, info[0], "onConnection");
    Napi::Function on_error = ArgFunction(env, info[1], "onError");
    if (poll_.existing()) throw ToJsError(env, vring::ErrorCode::kInvalidArgument, "listener already started");
    VRING_TRY
    poll_.Get(env, fd_.get(), &ListenerWrap::OnPoll, this).SetEvents(UV_READABLE);
    VRING_CATCH(env)
    on_connection_ = Napi::Persistent(on_connection);
    on_error_ = Napi::Persistent(on_error);
    pin_.Set(*this, true);
  }

  void Ref(const Napi::CallbackInfo& info) {
    RequireOpen(info.Env());
    poll_.SetRef(true);
  }

  void Unref(const Napi::CallbackInfo& info) {
    RequireOpen(info.Env());
    poll_.SetRef(false);
  }

  void Close(const Napi::CallbackInfo&) { Stop(); }

  // Closes the socket and drops the callbacks and the pin: nothing more reaches JS.
  void Stop() {
    CloseImpl();
    on_connection_.Reset();
    on_error_.Reset();
    pin_.Set(*this, false);
  }

  void CloseImpl() {
    if (!fd_.valid()) return;
    // Unlink while still bound: the open socket pins the file's identity (see UnlinkSocketFile).
    vring::UnlinkSocketFile(path_, file_id_);
    poll_.Reset();
    fd_.reset();
  }

  static void OnPoll(void* owner, int status, int) {
    auto* self = static_cast<ListenerWrap*>(owner);
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    Napi::Object keep = self->Value();
    try {
      if (status < 0)
        throw vring::Error(vring::ErrorCode::kSystem,
                           std::string("listener poll failed: ") + uv_strerror(status), -status,
                           "uv_poll");
      for (int i = 0; i < kMaxAcceptsPerWakeup && self->fd_.valid(); ++i) {
        vring::UniqueFd fd = vring::AcceptUnix(self->fd_.get());
        if (!fd.valid()) return;
        Napi::HandleScope inner(env);
        Napi::Object conn = NewUnixConnection(env, std::move(fd), self->config_);
        EmitEvent(env, self->on_connection_, keep, {conn});
      }
    } catch (const vring::Error& e) {
      // accept4 failed (e.g. EMFILE): a level-triggered poll would spin, so the listener stops.
      Napi::Value js_error = ToJsError(env, e).Value();
      Napi::FunctionReference on_error = std::move(self->on_error_);
      self->Stop();
      EmitEvent(env, on_error, keep, {js_error});
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env, e.Value());
    }
  }

  std::string path_;
  ConnectionConfig config_;
  vring::SocketFileId file_id_;
  vring::UniqueFd fd_;
  LazyPollHandle poll_;
  Napi::FunctionReference on_connection_, on_error_;
  SelfPin pin_;
};

}  // namespace

void InitUnixListener(Napi::Env env, Napi::Object exports) {
  exports.Set("UnixListener", ListenerWrap::Define(env));
}

}  // namespace vring::binding
