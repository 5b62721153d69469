// A libuv poll watcher tied to a JS-facing handle object, with the lifetime rules libuv and
// Node impose:
//   * the uv_poll_t lives on the heap and is freed only in libuv's close callback, so it may
//     outlive its owner (closing from a finalizer, or from inside its own callback, is safe);
//   * it is unref'd from birth, so an idle watcher never keeps the process alive;
//   * an async env cleanup hook closes it if the environment (main thread or worker) goes away
//     first, and Node waits for the close callback before it destroys the loop. The hook and an
//     explicit Close never both close the handle.
// uv_close stops polling and removes the fd from epoll synchronously, so the owner may close
// its fd right after Close().
// Below it, what every wrap that polls (eventfd, Unix connection and listener) shares: the
// lazily made watcher with its ref state, the pin on its own JS object, and the call into JS.
#pragma once

#include <napi.h>
#include <uv.h>

#include <memory>

namespace vring::binding {

class PollHandle {
 public:
  // Called on the loop thread with libuv's status (< 0 is a -errno) and UV_READABLE/UV_WRITABLE.
  using Callback = void (*)(void* owner, int status, int events);

  // Throws vring::Error if libuv refuses the fd.
  PollHandle(Napi::Env env, int fd, Callback callback, void* owner);
  ~PollHandle() { Close(); }
  PollHandle(const PollHandle&) = delete;
  PollHandle& operator=(const PollHandle&) = delete;

  // Polls for `events` (0 stops polling; a stopped handle never keeps the loop alive).
  void SetEvents(int events);
  int events() const { return events_; }
  // Whether an active watcher keeps the event loop (and so the process) alive.
  void SetRef(bool ref);
  // Idempotent. Afterwards no callback is made and SetEvents/SetRef do nothing.
  void Close();
  bool closed() const { return slot_ == nullptr; }

 private:
  struct Slot;
  static void OnPoll(uv_poll_t* poll, int status, int events);
  static void OnClosed(uv_handle_t* handle);
  static void OnEnvTeardown(napi_async_cleanup_hook_handle hook, void* arg);

  Slot* slot_ = nullptr;
  int events_ = 0;
};

// The poll state of a JS handle that watches one fd: its PollHandle, made on first use (a
// handle that is never watched needs none), and whether JS asked it to keep the loop alive,
// which ref()/unref() may say before the PollHandle exists.
class LazyPollHandle {
 public:
  // The PollHandle, made and ref'd as asked on the first call. Throws what PollHandle throws.
  PollHandle& Get(Napi::Env env, int fd, PollHandle::Callback callback, void* owner);
  // The PollHandle if it was made, else nullptr.
  PollHandle* existing() const { return poll_.get(); }
  void SetRef(bool ref);
  // Closes the PollHandle (a later Get makes a new one).
  void Reset() { poll_.reset(); }

 private:
  std::unique_ptr<PollHandle> poll_;
  bool ref_ = false;
};

// A strong reference an ObjectWrap holds on its own JS object while JS may still get a
// callback from it: the caller may keep no reference, yet GC must not drop a handle whose
// events it waits for.
class SelfPin {
 public:
  void Set(Napi::Reference<Napi::Object>& self, bool pin) {
    if (pin == pinned_) return;
    pinned_ = pin;
    if (pin)
      self.Ref();
    else
      self.Unref();
  }

 private:
  bool pinned_ = false;
};

// Calls `fn(args)` with `recv` as `this` from a poll callback. It goes through MakeCallback so
// promise continuations run before control returns to libuv, and a throw becomes an uncaught
// exception, as from any event handler: there is no JS caller to hand it to. Does nothing if
// `fn` is empty (the handle closed meanwhile).
void EmitEvent(Napi::Env env, const Napi::FunctionReference& fn, napi_value recv,
               std::initializer_list<napi_value> args);

}  // namespace vring::binding
