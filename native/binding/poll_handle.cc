#include "poll_handle.h"

#include <new>
#include <string>

#include "vring/error.h"

namespace vring::binding {

struct PollHandle::Slot {
  uv_poll_t poll;  // first member: libuv hands back &poll, which is also the Slot's address
  PollHandle* handle = nullptr;  // null once closed by either side
  Callback callback = nullptr;
  void* owner = nullptr;
  napi_async_cleanup_hook_handle hook = nullptr;
};

PollHandle::PollHandle(Napi::Env env, int fd, Callback callback, void* owner) {
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr)
    throw vring::Error(vring::ErrorCode::kSystem, "cannot get the libuv event loop");
  auto* slot = new Slot();
  int rc = uv_poll_init(loop, &slot->poll, fd);
  if (rc != 0) {
    delete slot;  // libuv did not register the handle, so it owns nothing yet
    throw vring::Error(vring::ErrorCode::kSystem,
                       std::string("cannot watch fd ") + std::to_string(fd) + ": " + uv_strerror(rc),
                       -rc, "uv_poll_init");
  }
  slot->handle = this;
  slot->callback = callback;
  slot->owner = owner;
  uv_unref(reinterpret_cast<uv_handle_t*>(&slot->poll));
  if (napi_add_async_cleanup_hook(env, OnEnvTeardown, slot, &slot->hook) != napi_ok) {
    slot->hook = nullptr;
    slot->handle = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&slot->poll), OnClosed);
    throw vring::Error(vring::ErrorCode::kSystem, "cannot register an environment cleanup hook");
  }
  slot_ = slot;
}

void PollHandle::SetEvents(int events) {
  if (slot_ == nullptr || events == events_) return;
  int rc = events == 0 ? uv_poll_stop(&slot_->poll) : uv_poll_start(&slot_->poll, events, OnPoll);
  if (rc != 0)
    throw vring::Error(vring::ErrorCode::kSystem, std::string("cannot poll: ") + uv_strerror(rc), -rc,
                       "uv_poll_start");
  events_ = events;
}

void PollHandle::SetRef(bool ref) {
  if (slot_ == nullptr) return;
  auto* h = reinterpret_cast<uv_handle_t*>(&slot_->poll);
  if (ref)
    uv_ref(h);
  else
    uv_unref(h);
}

void PollHandle::Close() {
  Slot* slot = slot_;
  if (slot == nullptr) return;
  slot_ = nullptr;
  events_ = 0;
  slot->handle = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&slot->poll), OnClosed);
}

void PollHandle::OnPoll(uv_poll_t* poll, int status, int events) {
  auto* slot = reinterpret_cast<Slot*>(poll);
  if (slot->handle != nullptr) slot->callback(slot->owner, status, events);
}

void PollHandle::OnClosed(uv_handle_t* handle) {
  auto* slot = reinterpret_cast<Slot*>(handle);
  // Also tells Node that a teardown which was waiting for this handle may proceed.
  if (slot->hook != nullptr) napi_remove_async_cleanup_hook(slot->hook);
  delete slot;
}

void PollHandle::OnEnvTeardown(napi_async_cleanup_hook_handle, void* arg) {
  auto* slot = static_cast<Slot*>(arg);
  // Close() always runs uv_close, whose callback removes the hook; if it already ran, the close
  // callback is pending and will complete the hook.
  if (slot->handle != nullptr) slot->handle->Close();
}

PollHandle& LazyPollHandle::Get(Napi::Env env, int fd, PollHandle::Callback callback, void* owner) {
  if (!poll_) {
    poll_ = std::make_unique<PollHandle>(env, fd, callback, owner);
    poll_->SetRef(ref_);
  }
  return *poll_;
}

void LazyPollHandle::SetRef(bool ref) {
  ref_ = ref;
  if (poll_) poll_->SetRef(ref);
}

void EmitEvent(Napi::Env env, const Napi::FunctionReference& fn, napi_value recv,
               std::initializer_list<napi_value> args) {
  if (fn.IsEmpty()) return;
  try {
    Napi::Function f = fn.Value();
    f.MakeCallback(recv, args);
  } catch (const Napi::Error& e) {
    napi_fatal_exception(env, e.Value());
  }
}

}  // namespace vring::binding
