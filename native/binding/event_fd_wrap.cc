// JS handle for an eventfd: signal/drain, and a uv_poll watcher that drains in C++ and crosses
// into JS once per wakeup with the drained count.
#include <napi.h>

#include <memory>

#include "args.h"
#include "js_error.h"
#include "poll_handle.h"
#include "vring/event_fd.h"

namespace vring::binding {

namespace {

class EventFdWrap : public Napi::ObjectWrap<EventFdWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "EventFd",
                       {
                           InstanceAccessor<&EventFdWrap::GetFd>("fd"),
                           InstanceAccessor<&EventFdWrap::GetClosed>("closed"),
                           InstanceMethod<&EventFdWrap::Signal>("signal"),
                           InstanceMethod<&EventFdWrap::Drain>("drain"),
                           InstanceMethod<&EventFdWrap::Watch>("watch"),
                           InstanceMethod<&EventFdWrap::StopWatching>("stopWatching"),
                           InstanceMethod<&EventFdWrap::Ref>("ref"),
                           InstanceMethod<&EventFdWrap::Unref>("unref"),
                           InstanceMethod<&EventFdWrap::Close>("close"),
                       });
  }

  // new EventFd() creates an eventfd; new EventFd(fd) adopts a duplicate of fd, leaving the
  // caller's fd alone.
  explicit EventFdWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EventFdWrap>(info) {
    Napi::Env env = info.Env();
    const int fd = ArgOptionalFd(env, info[0], "fd");
    VRING_TRY
    efd_ = fd < 0 ? vring::EventFd::Create() : vring::EventFd::Adopt(vring::DupFd(fd));
    VRING_CATCH(env)
  }

  ~EventFdWrap() override {
    // Finalizer or env teardown: stop polling before the fd closes (member order does the rest).
    poll_.Reset();
  }

 private:
  void RequireOpen(Napi::Env env) const {
    if (!efd_.valid()) throw ToJsError(env, vring::ErrorCode::kClosed, "eventfd is closed");
  }

  Napi::Value GetFd(const Napi::CallbackInfo& info) {
    RequireOpen(info.Env());
    return Napi::Number::New(info.Env(), efd_.fd());
  }

  Napi::Value GetClosed(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), !efd_.valid());
  }

  void Signal(const Napi::CallbackInfo& info) {
    VRING_TRY
    efd_.Signal();
    VRING_CATCH(info.Env())
  }

  Napi::Value Drain(const Napi::CallbackInfo& info) {
    VRING_TRY
    return Napi::Number::New(info.Env(), static_cast<double>(efd_.Drain()));
    VRING_CATCH(info.Env())
  }

  void Watch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    Napi::Function callback = ArgFunction(env, info[0], "callback");
    VRING_TRY
    poll_.Get(env, efd_.fd(), &EventFdWrap::OnReadable, this).SetEvents(UV_READABLE);
    VRING_CATCH(env)
    callback_ = Napi::Persistent(callback);
    pin_.Set(*this, true);
  }

  void StopWatching(const Napi::CallbackInfo& info) {
    RequireOpen(info.Env());
    StopWatchingImpl();
  }

  void Ref(const Napi::CallbackInfo& info) {
    RequireOpen(info.Env());
    poll_.SetRef(true);
  }

  void Unref(const Napi::CallbackInfo& info) {
    RequireOpen(info.Env());
    poll_.SetRef(false);
  }

  void Close(const Napi::CallbackInfo&) {
    if (!efd_.valid()) return;
    StopWatchingImpl();
    poll_.Reset();
    efd_.Close();
  }

  void StopWatchingImpl() {
    if (PollHandle* poll = poll_.existing()) poll->SetEvents(0);
    callback_.Reset();
    pin_.Set(*this, false);
  }

  static void OnReadable(void* owner, int status, int) {
    auto* self = static_cast<EventFdWrap*>(owner);
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    uint64_t count = 0;
    try {
      if (status < 0)
        throw vring::Error(vring::ErrorCode::kSystem,
                           std::string("eventfd poll failed: ") + uv_strerror(status), -status,
                           "uv_poll");
      // Draining here, not in JS, keeps a wakeup to one crossing and re-arms the level trigger.
      count = self->efd_.Drain();
    } catch (const vring::Error& e) {
      self->StopWatchingImpl();
      napi_fatal_exception(env, ToJsError(env, e).Value());
      return;
    }
    if (count > 0)
      EmitEvent(env, self->callback_, self->Value(), {Napi::Number::New(env, static_cast<double>(count))});
  }

  vring::EventFd efd_;
  LazyPollHandle poll_;
  Napi::FunctionReference callback_;
  SelfPin pin_;
};

}  // namespace

void InitEventFd(Napi::Env env, Napi::Object exports) {
  exports.Set("EventFd", EventFdWrap::Define(env));
}

}  // namespace vring::binding
