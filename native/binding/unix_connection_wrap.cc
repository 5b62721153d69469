// A UnixConnection reads framed messages (with their fds) and writes them, queueing whatever
// the socket buffer cannot take yet. Readiness comes from uv_poll; every crossing into JS goes
// through MakeCallback so promise continuations run before control returns to libuv.
#include "unix_connection_wrap.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "addon_data.h"
#include "args.h"
#include "js_error.h"
#include "poll_handle.h"

namespace vring::binding {

namespace {

// Messages handed to JS per readiness callback before yielding back to libuv, so one busy
// connection cannot starve the rest of the loop (uv_poll is level-triggered: it fires again).
constexpr int kMaxMessagesPerWakeup = 64;

// What NewUnixConnection hands the constructor, inside an External.
struct ConnectionInit {
  vring::UniqueFd fd;
  ConnectionConfig config;
};

class ConnectionWrap : public Napi::ObjectWrap<ConnectionWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "UnixConnection",
                       {
                           InstanceAccessor<&ConnectionWrap::GetClosed>("closed"),
                           InstanceAccessor<&ConnectionWrap::GetQueued>("queuedSends"),
                           InstanceAccessor<&ConnectionWrap::GetPeerCredentials>("peerCredentials"),
                           InstanceMethod<&ConnectionWrap::Start>("start"),
                           InstanceMethod<&ConnectionWrap::Pause>("pause"),
                           InstanceMethod<&ConnectionWrap::Resume>("resume"),
                           InstanceMethod<&ConnectionWrap::Send>("send"),
                           InstanceMethod<&ConnectionWrap::Ref>("ref"),
                           InstanceMethod<&ConnectionWrap::Unref>("unref"),
                           InstanceMethod<&ConnectionWrap::Close>("close"),
                       });
  }

  explicit ConnectionWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ConnectionWrap>(info) {
    if (!info[0].IsExternal())
      throw ToJsError(info.Env(), vring::ErrorCode::kInvalidArgument,
                      "UnixConnection cannot be constructed directly; use unixConnect()");
    auto* init = info[0].As<Napi::External<ConnectionInit>>().Data();
    config_ = init->config;
    fd_ = std::move(init->fd);
    reader_ = std::make_unique<vring::MessageReader>(fd_.get(), config_.framing);
  }

  ~ConnectionWrap() override { poll_.Reset(); }

 private:
  struct Outgoing {
    std::vector<uint8_t> bytes;
    std::vector<vring::UniqueFd> fds;  // our duplicates; empty once the first byte went out
    size_t offset = 0;
  };

  void RequireOpen(Napi::Env env) const {
    if (!fd_.valid()) throw ToJsError(env, vring::ErrorCode::kClosed, "socket is closed");
  }

  Napi::Value GetClosed(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), !fd_.valid());
  }

  // { pid, uid, gid, groups }: read from the kernel on each call (once per connection in
  // practice: the listener's access check, or a front-end's check of its back-end).
  Napi::Value GetPeerCredentials(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    VRING_TRY
    const vring::PeerCredentials peer = vring::GetPeerCredentials(fd_.get());
    Napi::Object out = Napi::Object::New(env);
    out.Set("pid", Napi::Number::New(env, peer.pid));
    out.Set("uid", Napi::Number::New(env, peer.uid));
    out.Set("gid", Napi::Number::New(env, peer.gid));
    Napi::Array groups = Napi::Array::New(env, peer.groups.size());
    for (size_t i = 0; i < peer.groups.size(); ++i)
      groups.Set(static_cast<uint32_t>(i), Napi::Number::New(env, peer.groups[i]));
    out.Set("groups", groups);
    return out;
    VRING_CATCH(env)
  }

  Napi::Value GetQueued(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(queue_.size()));
  }

  // start(onMessage(data, fds), onClose(error), onDrain())
  void Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    Napi::Function on_message = ArgFunction(env, info[0], "onMessage");
    Napi::Function on_close = ArgFunction(env, info[1], "onClose");
    Napi::Function on_drain = ArgFunction(env, info[2], "onDrain");
    if (started_) throw ToJsError(env, vring::ErrorCode::kInvalidArgument, "socket already started");
    on_message_ = Napi::Persistent(on_message);
    on_close_ = Napi::Persistent(on_close);
    on_drain_ = Napi::Persistent(on_drain);
    started_ = true;
    reading_ = true;
    VRING_TRY
    UpdatePoll();
    VRING_CATCH(env)
  }

  void Pause(const Napi::CallbackInfo& info) { SetReading(info.Env(), false); }

  // Reading resumes only on a started connection: before start() there is nowhere to deliver.
  void Resume(const Napi::CallbackInfo& info) { SetReading(info.Env(), started_); }

  void SetReading(Napi::Env env, bool reading) {
    RequireOpen(env);
    reading_ = reading;
    VRING_TRY
    UpdatePoll();
    VRING_CATCH(env)
  }

  void Ref(const Napi::CallbackInfo& info) {
    RequireOpen(info.Env());
    poll_.SetRef(true);
  }

  void Unref(const Napi::CallbackInfo& info) {
    RequireOpen(info.Env());
    poll_.SetRef(false);
  }

  void Close(const Napi::CallbackInfo&) { CloseImpl(); }

  // send(data, fds?) -> true when it all went out now, false when queued (onDrain follows).
  // The caller keeps its fds: queued messages hold duplicates.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    const Bytes data = ArgBytes(env, info[0], "data");
    const std::vector<int> fds = ArgFdList(env, info[1], "fds", vring::kMaxFdsPerMessage);
    VRING_TRY
    return Napi::Boolean::New(env, SendImpl(data.data, data.size, fds));
    VRING_CATCH(env)
  }

  bool SendImpl(const uint8_t* data, size_t len, const std::vector<int>& fds) {
    const vring::FramingOptions& f = config_.framing;
    uint8_t header[4096];
    iovec iov[2];
    size_t iovcnt;
    size_t payload;
    if (config_.add_header) {
      payload = len;
      std::memset(header, 0, f.header_size);
      const uint32_t n = static_cast<uint32_t>(len);
      std::memcpy(header + f.length_offset, &n, sizeof n);
      iov[0] = {header, f.header_size};
      iov[1] = {const_cast<uint8_t*>(data), len};
      iovcnt = 2;
    } else {
      if (len < f.header_size)
        throw vring::Error(vring::ErrorCode::kInvalidArgument,
                           "a frame must start with its " + std::to_string(f.header_size) +
                               "-byte header");
      uint32_t n;
      std::memcpy(&n, data + f.length_offset, sizeof n);
      payload = len - f.header_size;
      if (n != payload)
        throw vring::Error(vring::ErrorCode::kInvalidArgument,
                           "the frame's length field says " + std::to_string(n) + " bytes but " +
                               std::to_string(payload) + " follow the header");
      iov[0] = {const_cast<uint8_t*>(data), len};
      iovcnt = 1;
    }
    if (payload > f.max_payload)
      throw vring::Error(vring::ErrorCode::kOversizedMessage,
                         "message payload of " + std::to_string(payload) +
                             " bytes exceeds the limit of " + std::to_string(f.max_payload));

    size_t sent = 0;
    if (queue_.empty()) {
      if (vring::SendMessageV(fd_.get(), iov, iovcnt, fds.data(), fds.size(), &sent) ==
          vring::SendStatus::kComplete)
        return true;
    }
    // Queue the unsent tail. If not one byte went out, the fds did not either: keep duplicates,
    // since the caller may close its fds as soon as this returns.
    Outgoing out;
    size_t total = 0;
    for (size_t i = 0; i < iovcnt; ++i) total += iov[i].iov_len;
    out.bytes.reserve(total - sent);
    size_t skip = sent;
    for (size_t i = 0; i < iovcnt; ++i) {
      const auto* base = static_cast<const uint8_t*>(iov[i].iov_base);
      const size_t n = iov[i].iov_len;
      if (skip >= n) {
        skip -= n;
        continue;
      }
      out.bytes.insert(out.bytes.end(), base + skip, base + n);
      skip = 0;
    }
    if (sent == 0)
      for (int fd : fds) out.fds.push_back(vring::DupFd(fd));
    queue_.push_back(std::move(out));
    UpdatePoll();
    return false;
  }

  void UpdatePoll() {
    if (!fd_.valid()) return;
    const int events = (reading_ ? UV_READABLE : 0) | (queue_.empty() ? 0 : UV_WRITABLE);
    if (events != 0)
      poll_.Get(Env(), fd_.get(), &ConnectionWrap::OnPoll, this).SetEvents(events);
    else if (PollHandle* poll = poll_.existing())
      poll->SetEvents(0);
    // JS may still get a callback while it is started or has sends queued.
    pin_.Set(*this, started_ || !queue_.empty());
  }

  void CloseImpl() {
    if (!fd_.valid()) return;
    poll_.Reset();
    fd_.reset();
    reader_.reset();
    queue_.clear();
    on_message_.Reset();
    on_close_.Reset();
    on_drain_.Reset();
    pin_.Set(*this, false);
  }

  // Closes the connection and reports why through onClose.
  void Fail(Napi::Env env, const vring::Error& error) {
    Napi::Value js_error = ToJsError(env, error).Value();
    Napi::FunctionReference on_close = std::move(on_close_);
    Napi::Object self = Value();  // keeps the object alive after CloseImpl unpins it
    CloseImpl();
    EmitEvent(env, on_close, self, {js_error});
  }

  static void OnPoll(void* owner, int status, int events) {
    auto* self = static_cast<ConnectionWrap*>(owner);
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    Napi::Object keep = self->Value();  // alive even if a callback closes (and unpins) it
    static_cast<void>(keep);
    if (status < 0) {
      // libuv reports any EPOLLERR as UV_EBADF. Deliver what is still readable (reading
      // also turns a reset into the right error), then report the socket's real error.
      if (self->reading_) self->ReadMessages(env);
      if (!self->fd_.valid()) return;
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(self->fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err == 0 || err == ECONNRESET || err == EPIPE) {
        self->Fail(env, vring::Error(vring::ErrorCode::kPeerDisconnected,
                                     "the peer closed the connection"));
      } else {
        self->Fail(env, vring::Error(vring::ErrorCode::kSystem,
                                     std::string("socket failed: ") + std::strerror(err), err,
                                     "uv_poll"));
      }
      return;
    }
    if (events & UV_WRITABLE) self->Flush(env);
    if ((events & UV_READABLE) && self->fd_.valid()) self->ReadMessages(env);
  }

  void Flush(Napi::Env env) {
    try {
      while (!queue_.empty()) {
        Outgoing& o = queue_.front();
        std::vector<int> raw;
        for (auto& fd : o.fds) raw.push_back(fd.get());
        size_t sent = 0;
        auto status = vring::SendMessage(fd_.get(), o.bytes.data() + o.offset,
                                         o.bytes.size() - o.offset, raw.data(), raw.size(), &sent);
        o.offset += sent;
        if (sent > 0) o.fds.clear();
        if (status == vring::SendStatus::kWouldBlock) return;
        queue_.pop_front();
      }
      UpdatePoll();
    } catch (const vring::Error& e) {
      Fail(env, e);
      return;
    }
    EmitEvent(env, on_drain_, Value(), {});
  }

  void ReadMessages(Napi::Env env) {
    for (int i = 0; i < kMaxMessagesPerWakeup && reading_ && fd_.valid(); ++i) {
      vring::Message m;
      vring::ReadStatus status;
      try {
        status = reader_->Read(&m);
      } catch (const vring::Error& e) {
        Fail(env, e);
        return;
      }
      if (status == vring::ReadStatus::kWouldBlock) return;
      if (status == vring::ReadStatus::kEof) {
        Fail(env, vring::Error(vring::ErrorCode::kPeerDisconnected, "the peer closed the connection"));
        return;
      }
      Napi::HandleScope scope(env);
      const size_t skip = config_.add_header ? config_.framing.header_size : 0;
      Napi::Buffer<uint8_t> data =
          Napi::Buffer<uint8_t>::Copy(env, m.bytes.data() + skip, m.bytes.size() - skip);
      Napi::Array fds = Napi::Array::New(env, m.fds.size());
      // From here JS owns the fds.
      for (size_t k = 0; k < m.fds.size(); ++k)
        fds.Set(static_cast<uint32_t>(k), Napi::Number::New(env, m.fds[k].release()));
      EmitEvent(env, on_message_, Value(), {data, fds});
    }
  }

  ConnectionConfig config_;
  vring::UniqueFd fd_;
  std::unique_ptr<vring::MessageReader> reader_;
  std::deque<Outgoing> queue_;
  LazyPollHandle poll_;
  Napi::FunctionReference on_message_, on_close_, on_drain_;
  SelfPin pin_;
  bool started_ = false;
  bool reading_ = false;
};

// unixConnect(path, options) -> UnixConnection
Napi::Value UnixConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = ArgString(env, info[0], "path");
  const ConnectionConfig config = ArgConnectionConfig(env, info[1]);
  VRING_TRY
  return NewUnixConnection(env, vring::ConnectUnix(path), config);
  VRING_CATCH(env)
}

}  // namespace

ConnectionConfig ArgConnectionConfig(Napi::Env env, const Napi::Value& v) {
  ConnectionConfig c;
  if (IsAbsent(v)) return c;
  Napi::Object o = ArgObject(env, v, "options");
  const vring::FramingOptions defaults;
  c.framing.max_payload = ArgOptionalU32(env, o.Get("maxPayload"), "maxPayload", defaults.max_payload);
  c.framing.header_size = ArgOptionalU32(env, o.Get("headerSize"), "headerSize", defaults.header_size);
  c.framing.length_offset = ArgOptionalU32(env, o.Get("lengthOffset"), "lengthOffset", defaults.length_offset);
  c.add_header = ArgOptionalBool(env, o.Get("addHeader"), "addHeader", false);
  VRING_TRY
  vring::ValidateFraming(c.framing);
  VRING_CATCH(env)
  return c;
}

Napi::Object NewUnixConnection(Napi::Env env, vring::UniqueFd fd, const ConnectionConfig& config) {
  ConnectionInit init{std::move(fd), config};
  const Napi::FunctionReference& ctor = env.GetInstanceData<AddonData>()->connection_constructor;
  // On a throw the fd is still in `init`, which closes it.
  return ctor.New({Napi::External<ConnectionInit>::New(env, &init)});
}

void InitUnixConnection(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = ConnectionWrap::Define(env);
  env.GetInstanceData<AddonData>()->connection_constructor = Napi::Persistent(ctor);
  exports.Set("UnixConnection", ctor);
  exports.Set("unixConnect", Napi::Function::New(env, UnixConnect, "unixConnect"));
}

}  // namespace vring::binding
