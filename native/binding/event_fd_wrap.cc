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
    poll_.reset();
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
    if (!poll_) {
      poll_ = std::make_unique<PollHandle>(env, efd_.fd(), &EventFdWrap::OnReadable, this);
      poll_->SetRef(ref_);
    }
    poll_->SetEvents(UV_READABLE);
    VRING_CATCH(env)
    callback_ = Napi::Persistent(callback);
    // A watcher with a callback must not vanish with GC while the caller relies on it firing.
    if (!pinned_) {
      ObjectWrap::Ref();
      pinned_ = true;
    }
  }

  void StopWatching(const Napi::CallbackInfo& info) {
    RequireOpen(info.Env());
    StopWatchingImpl();
  }

  void Ref(const Napi::CallbackInfo& info) {
    RequireOpen(info.Env());
    ref_ = true;
    if (poll_) poll_->SetRef(true);
  }

  void Unref(const Napi::CallbackInfo& info) {
    RequireOpen(info.Env());
    ref_ = false;
    if (poll_) poll_->SetRef(false);
  }

  void Close(const Napi::CallbackInfo&) {
    if (!efd_.valid()) return;
    StopWatchingImpl();
    poll_.reset();
    efd_.Close();
  }

  void StopWatchingImpl() {
    if (poll_) poll_->SetEvents(0);
    callback_.Reset();
    if (pinned_) {
      pinned_ = false;
      ObjectWrap::Unref();
    }
  }

  static void OnReadable(void* owner, int status, int) {
    auto* self = static_cast<EventFdWrap*>(owner);
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    try {
      if (status < 0)
        throw vring::Error(vring::ErrorCode::kSystem,
                           std::string("eventfd poll failed: ") + uv_strerror(status), -status,
                           "uv_poll");
      // Draining here, not in JS, keeps a wakeup to one crossing and re-arms the level trigger.
      const uint64_t count = self->efd_.Drain();
      if (count == 0 || self->callback_.IsEmpty()) return;
      Napi::Function cb = self->callback_.Value();
      cb.MakeCallback(self->Value(), {Napi::Number::New(env, static_cast<double>(count))});
    } catch (const vring::Error& e) {
      self->StopWatchingImpl();
      napi_fatal_exception(env, ToJsError(env, e).Value());
    } catch (const Napi::Error& e) {
      // The callback threw: report it like any uncaught exception from an event handler.
      napi_fatal_exception(env, e.Value());
    }
  }

  vring::EventFd efd_;
  std::unique_ptr<PollHandle> poll_;
  Napi::FunctionReference callback_;
  bool ref_ = false;
  bool pinned_ = false;
};

}  // namespace

void InitEventFd(Napi::Env env, Napi::Object exports) {
  exports.Set("EventFd", EventFdWrap::Define(env));
}

}  // namespace vring::binding
