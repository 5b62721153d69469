// JS handles for the two ends of a queue pair. Both share one template: the batch data
// path (send/receive with an optional spin budget), notification arming, stats, close.
// One call moves a whole batch; nothing here runs per message except length checks.
#include <napi.h>

#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "args.h"
#include "js_error.h"
#include "region_wrap.h"
#include "vring/device_queue_pair.h"
#include "vring/driver_queue_pair.h"
#include "vring/spin_wait.h"

namespace vring::binding {

namespace {

QueuePairConfig ArgConfig(Napi::Env env, const Napi::Value& v) {
  Napi::Object o = ArgObject(env, v, "config");
  QueuePairConfig c;
  c.queue_size = ArgU32(env, o.Get("queueSize"), "queueSize");
  c.buffer_size = ArgU32(env, o.Get("bufferSize"), "bufferSize");
  c.max_message = ArgU32(env, o.Get("maxMessage"), "maxMessage");
  c.event_idx = ArgOptionalBool(env, o.Get("eventIdx"), "eventIdx", false);
  c.mergeable = ArgOptionalBool(env, o.Get("mergeable"), "mergeable", false);
  c.in_order = ArgOptionalBool(env, o.Get("inOrder"), "inOrder", false);
  c.packed = ArgOptionalBool(env, o.Get("packed"), "packed", false);
  return c;
}

RingAddresses ArgRing(Napi::Env env, const Napi::Value& v, const std::string& name) {
  Napi::Object o = ArgObject(env, v, name.c_str());
  return {ArgU64(env, o.Get("desc"), (name + ".desc").c_str()), ArgU64(env, o.Get("avail"), (name + ".avail").c_str()),
          ArgU64(env, o.Get("used"), (name + ".used").c_str())};
}

Napi::Object RingToJs(Napi::Env env, const RingAddresses& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("desc", Napi::BigInt::New(env, r.desc));
  o.Set("avail", Napi::BigInt::New(env, r.avail));
  o.Set("used", Napi::BigInt::New(env, r.used));
  return o;
}

// The bytes of the first `count` messages starting at lengths[start]; checks that they lie
// inside `available` so a wrong length array cannot make us read past the JS buffer.
uint64_t BatchBytes(Napi::Env env, const uint32_t* lengths, uint32_t count, uint64_t available) {
  uint64_t total = 0;
  for (uint32_t i = 0; i < count; ++i) total += lengths[i];
  if (total > available) throw ToJsError(env, ErrorCode::kInvalidArgument, "message lengths exceed the data buffer");
  return total;
}

// An ArrayBuffer over shared memory that keeps the mapping alive for as long as JavaScript
// can reach it: a view taken from it stays readable after the queue pair is closed, or its
// peer is gone (the memfd is sealed against shrinking, so the pages cannot vanish).
Napi::ArrayBuffer LendArea(Napi::Env env, const LentArea& area) {
  auto* hold = new std::shared_ptr<Mapping>(area.mapping);
  return Napi::ArrayBuffer::New(
      env, area.data, area.size, [](Napi::Env, void*, std::shared_ptr<Mapping>* h) { delete h; }, hold);
}

}  // namespace

template <typename Pair>
class QueuePairWrap : public Napi::ObjectWrap<QueuePairWrap<Pair>> {
 public:
  using Base = Napi::ObjectWrap<QueuePairWrap<Pair>>;

  static Napi::Function Define(Napi::Env env, const char* name) {
    std::vector<typename Base::PropertyDescriptor> props = {
        Base::template InstanceMethod<&QueuePairWrap::Send>("send"),
        Base::template InstanceMethod<&QueuePairWrap::Receive>("receive"),
        Base::template InstanceMethod<&QueuePairWrap::Receivable>("receivable"),
        Base::template InstanceMethod<&QueuePairWrap::ArmReceive>("armReceive"),
        Base::template InstanceMethod<&QueuePairWrap::DisarmReceive>("disarmReceive"),
        Base::template InstanceMethod<&QueuePairWrap::ArmSend>("armSend"),
        Base::template InstanceMethod<&QueuePairWrap::DisarmSend>("disarmSend"),
        Base::template InstanceMethod<&QueuePairWrap::Stats>("stats"),
        Base::template InstanceMethod<&QueuePairWrap::Info>("info"),
        Base::template InstanceMethod<&QueuePairWrap::Close>("close"),
        Base::template InstanceAccessor<&QueuePairWrap::Broken>("broken"),
        Base::template InstanceMethod<&QueuePairWrap::Lend>("lend"),
        Base::template InstanceMethod<&QueuePairWrap::ReceiveInPlace>("receiveInPlace"),
        Base::template InstanceMethod<&QueuePairWrap::Release>("release"),
    };
    if constexpr (std::is_same_v<Pair, DriverQueuePair>) {
      props.push_back(Base::template InstanceMethod<&QueuePairWrap::Reserve>("reserve"));
      props.push_back(Base::template InstanceMethod<&QueuePairWrap::Commit>("commit"));
      props.push_back(Base::template InstanceMethod<&QueuePairWrap::PrepareResume>("prepareResume"));
    } else {
      props.push_back(Base::template InstanceMethod<&QueuePairWrap::SendJoined>("sendJoined"));
      props.push_back(Base::template InstanceMethod<&QueuePairWrap::TrackInflight>("trackInflight"));
    }
    return Base::DefineClass(env, name, props);
  }

  explicit QueuePairWrap(const Napi::CallbackInfo& info) : Base(info) {
    Napi::Env env = info.Env();
    VRING_TRY
    Make(info);
    VRING_CATCH(env)
  }

 private:
  void Make(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);

  Pair& Open(Napi::Env env) {
    if (!pair_) throw ToJsError(env, ErrorCode::kClosed, "queue pair is closed");
    return *pair_;
  }

  // send(data, byteOffset, lengths, start, count, spinNs) -> messages accepted
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    VRING_TRY
    Pair& pair = Open(env);
    const Bytes data = ArgBytes(env, info[0], "data");
    const uint64_t offset = ArgU64(env, info[1], "byteOffset");
    size_t nlengths = 0;
    const uint32_t* lengths = ArgU32Array(env, info[2], "lengths", &nlengths);
    const uint32_t start = ArgU32(env, info[3], "start");
    const uint32_t count = ArgU32(env, info[4], "count");
    const uint64_t spin_ns = ArgU64(env, info[5], "spinNs");
    if (start > nlengths || count > nlengths - start) {
      throw Error(ErrorCode::kInvalidArgument, "start + count exceeds the lengths array");
    }
    if (offset > data.size) throw Error(ErrorCode::kInvalidArgument, "byteOffset is beyond the data buffer");
    lengths += start;
    BatchBytes(env, lengths, count, data.size - offset);
    const uint8_t* at = data.data + offset;
    uint32_t sent = 0;
    uint64_t deadline = spin_ns ? MonotonicNanos() + spin_ns : 0;
    for (;;) {
      const uint32_t n = pair.Send(at, lengths + sent, count - sent);
      at += BatchBytes(env, lengths + sent, n, UINT64_MAX);
      sent += n;
      if (sent == count || spin_ns == 0) break;
      const uint64_t now = MonotonicNanos();
      // The budget is for waiting on the peer, not for copying: a batch of large messages
      // copies for longer than a slice, and cutting the call short there sent the caller
      // back through the event loop (poll) or to sleep (adaptive) although the peer was
      // freeing room all along.
      if (n > 0) deadline = now + spin_ns;
      if (now >= deadline || !pair.WaitSendable(deadline - now, lengths[sent])) break;
    }
    return Napi::Number::New(env, sent);
    VRING_CATCH(env)
  }

  // receive(out, lengths, maxCount, spinNs) -> messages received
  Napi::Value Receive(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    VRING_TRY
    Pair& pair = Open(env);
    const Bytes out = ArgBytes(env, info[0], "out");
    size_t nlengths = 0;
    uint32_t* lengths = ArgU32Array(env, info[1], "lengths", &nlengths);
    uint32_t max_count = ArgU32(env, info[2], "maxCount");
    const uint64_t spin_ns = ArgU64(env, info[3], "spinNs");
    if (max_count > nlengths) max_count = static_cast<uint32_t>(nlengths);
    uint32_t n = pair.Receive(out.data, out.size, lengths, max_count);
    if (n == 0 && spin_ns > 0 && pair.WaitReceivable(spin_ns)) n = pair.Receive(out.data, out.size, lengths, max_count);
    return Napi::Number::New(env, n);
    VRING_CATCH(env)
  }

  // receivable(spinNs) -> whether a message waits to be received, after spinning up to spinNs
  // for one. No buffers to marshal: a poll that finds nothing costs a bare crossing.
  Napi::Value Receivable(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    VRING_TRY
    Pair& pair = Open(env);
    return Napi::Boolean::New(env, pair.WaitReceivable(ArgU64(env, info[0], "spinNs")));
    VRING_CATCH(env)
  }

  // lend() -> ArrayBuffer[]: the areas locations refer to, made once.
  Napi::Value Lend(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    VRING_TRY
    Pair& pair = Open(env);
    if (lent_.IsEmpty()) {
      uint32_t n = 2;
      if constexpr (std::is_same_v<Pair, DeviceQueuePair>) n = pair.area_count();
      Napi::Array areas = Napi::Array::New(env, n);
      for (uint32_t i = 0; i < n; ++i) areas.Set(i, LendArea(env, pair.Area(i)));
      lent_ = Napi::Persistent(areas);
    }
    return lent_.Value();
    VRING_CATCH(env)
  }

  // receiveInPlace(locations: Float64Array, scratch, maxCount, inPlaceMin, spinNs) -> count.
  // Message i is at locations[3i .. 3i+3) = [area (-1: scratch), byte offset, length].
  Napi::Value ReceiveInPlace(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    VRING_TRY
    Pair& pair = Open(env);
    size_t slots = 0;
    double* locations = ArgF64Array(env, info[0], "locations", &slots);
    const Bytes scratch = ArgBytes(env, info[1], "scratch");
    uint32_t max_count = ArgU32(env, info[2], "maxCount");
    const uint64_t in_place_min = ArgU64(env, info[3], "inPlaceMin");
    const uint64_t spin_ns = ArgU64(env, info[4], "spinNs");
    if (max_count > slots / 3) max_count = static_cast<uint32_t>(slots / 3);
    if (where_.size() < max_count) where_.resize(max_count);
    uint32_t n = pair.ReceiveInPlace(where_.data(), max_count, scratch.data, scratch.size, in_place_min);
    if (n == 0 && spin_ns > 0 && pair.WaitReceivable(spin_ns)) {
      n = pair.ReceiveInPlace(where_.data(), max_count, scratch.data, scratch.size, in_place_min);
    }
    for (uint32_t i = 0; i < n; ++i) {
      const MessageLocation& m = where_[i];
      locations[3 * i] = m.area == kInScratch ? -1.0 : static_cast<double>(m.area);
      locations[3 * i + 1] = static_cast<double>(m.offset);
      locations[3 * i + 2] = static_cast<double>(m.length);
    }
    return Napi::Number::New(env, n);
    VRING_CATCH(env)
  }

  // release(count): gives back the oldest `count` messages read in place.
  Napi::Value Release(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    VRING_TRY
    Open(env).Release(ArgU32(env, info[0], "count"));
    return env.Undefined();
    VRING_CATCH(env)
  }

  // reserve(minBytes, out: Float64Array(3)) -> whether there is room; out = [area, offset, capacity].
  Napi::Value Reserve(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    VRING_TRY
    Pair& pair = Open(env);
    const uint64_t min_bytes = ArgU64(env, info[0], "minBytes");
    size_t slots = 0;
    double* out = ArgF64Array(env, info[1], "out", &slots);
    if (slots < 3) throw Error(ErrorCode::kInvalidArgument, "out must hold 3 numbers");
    SendReservation room;
    if (!pair.ReserveSend(min_bytes, &room)) return Napi::Boolean::New(env, false);
    out[0] = room.area;
    out[1] = static_cast<double>(room.offset);
    out[2] = static_cast<double>(room.capacity);
    return Napi::Boolean::New(env, true);
    VRING_CATCH(env)
  }

  // commit(bytes): sends what was written at the reservation.
  Napi::Value Commit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    VRING_TRY
    Open(env).CommitSend(ArgU64(env, info[0], "bytes"));
    return env.Undefined();
    VRING_CATCH(env)
  }

  // prepareResume() -> { rx, tx }: packed rings laid out for a new device, and the ring bases
  // it resumes from (driver only; call when the old device is gone).
  Napi::Value PrepareResume(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    VRING_TRY
    const auto [rx, tx] = Open(env).PrepareResume();
    Napi::Object o = Napi::Object::New(env);
    o.Set("rx", Napi::Number::New(env, rx));
    o.Set("tx", Napi::Number::New(env, tx));
    return o;
    VRING_CATCH(env)
  }

  // sendJoined(head, body) -> whether the message `head` + `body` went (device only).
  Napi::Value SendJoined(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    VRING_TRY
    Pair& pair = Open(env);
    const Bytes head = ArgBytes(env, info[0], "head");
    const Bytes body = ArgBytes(env, info[1], "body");
    const ByteSpan parts[2] = {{head.data, head.size}, {body.data, body.size}};
    return Napi::Boolean::New(env, pair.SendJoined(parts, 2));
    VRING_CATCH(env)
  }

  // trackInflight(region, rxOffset, txOffset) -> chains taken again from the record (device only).
  Napi::Value TrackInflight(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    VRING_TRY
    Pair& pair = Open(env);
    SharedRegion& record = RegionWrap::FromValue(env, info[0], "region");
    return Napi::Number::New(env, pair.TrackInflight(record.mapping(), ArgU64(env, info[1], "rxOffset"),
                                                     ArgU64(env, info[2], "txOffset")));
    VRING_CATCH(env)
  }

  Napi::Value ArmReceive(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    VRING_TRY
    return Napi::Boolean::New(env, Open(env).ArmReceive());
    VRING_CATCH(env)
  }
  Napi::Value DisarmReceive(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    VRING_TRY
    Open(env).DisarmReceive();
    return env.Undefined();
    VRING_CATCH(env)
  }
  Napi::Value ArmSend(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    VRING_TRY
    // armSend(nextMessageBytes?)
    const uint64_t next = ArgOptionalU64(env, info[0], "nextMessageBytes", 0);
    return Napi::Boolean::New(env, Open(env).ArmSend(next));
    VRING_CATCH(env)
  }
  Napi::Value DisarmSend(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    VRING_TRY
    Open(env).DisarmSend();
    return env.Undefined();
    VRING_CATCH(env)
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const PortStats& s = Open(env).stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("messagesSent", Napi::Number::New(env, static_cast<double>(s.messages_sent)));
    o.Set("bytesSent", Napi::Number::New(env, static_cast<double>(s.bytes_sent)));
    o.Set("messagesReceived", Napi::Number::New(env, static_cast<double>(s.messages_received)));
    o.Set("bytesReceived", Napi::Number::New(env, static_cast<double>(s.bytes_received)));
    o.Set("notificationsSent", Napi::Number::New(env, static_cast<double>(s.notifications_sent)));
    o.Set("dropped", Napi::Number::New(env, static_cast<double>(s.dropped)));
    return o;
  }

  Napi::Value Broken(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), pair_ && pair_->broken());
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    pair_.reset();
    // Areas already lent stay valid: each holds its mapping.
    lent_.Reset();
    return info.Env().Undefined();
  }

  std::optional<Pair> pair_;
  Napi::Reference<Napi::Array> lent_;
  std::vector<MessageLocation> where_;
};

// new NativeDriverQueuePair(region, offset, guestBase, config, rxKickFd, txKickFd)
template <>
void QueuePairWrap<DriverQueuePair>::Make(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  SharedRegion& region = RegionWrap::FromValue(env, info[0], "region");
  pair_.emplace(region.mapping(), ArgU64(env, info[1], "offset"), ArgU64(env, info[2], "guestBase"),
                ArgConfig(env, info[3]), ArgOptionalFd(env, info[4], "rxKickFd"), ArgOptionalFd(env, info[5], "txKickFd"));
}

template <>
Napi::Value QueuePairWrap<DriverQueuePair>::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DriverQueuePair& pair = Open(env);
  Napi::Object o = Napi::Object::New(env);
  o.Set("rx", RingToJs(env, pair.rx_addresses()));
  o.Set("tx", RingToJs(env, pair.tx_addresses()));
  o.Set("bytes", Napi::Number::New(env, static_cast<double>(pair.layout().total_bytes)));
  return o;
}

// new NativeDeviceQueuePair(regions: {region, guestAddress, userAddress}[], rx, tx, config,
//                           rxBase, txBase, rxCallFd, txCallFd)
template <>
void QueuePairWrap<DeviceQueuePair>::Make(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array regions = ArgArray(env, info[0], "regions");
  auto memory = std::make_shared<MemoryTable>();
  for (uint32_t i = 0; i < regions.Length(); ++i) {
    const std::string name = "regions[" + std::to_string(i) + "]";
    Napi::Object o = ArgObject(env, regions.Get(i), name.c_str());
    SharedRegion& region = RegionWrap::FromValue(env, o.Get("region"), name + ".region");
    memory->Add(ArgU64(env, o.Get("guestAddress"), (name + ".guestAddress").c_str()),
                ArgU64(env, o.Get("userAddress"), (name + ".userAddress").c_str()), region.size(), region.mapping());
  }
  pair_.emplace(std::move(memory), ArgRing(env, info[1], "rx"), ArgRing(env, info[2], "tx"), ArgConfig(env, info[3]),
                ArgU16(env, info[4], "rxBase"), ArgU16(env, info[5], "txBase"), ArgOptionalFd(env, info[6], "rxCallFd"),
                ArgOptionalFd(env, info[7], "txCallFd"));
}

template <>
Napi::Value QueuePairWrap<DeviceQueuePair>::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DeviceQueuePair& pair = Open(env);
  Napi::Object o = Napi::Object::New(env);
  o.Set("rxLastAvail", Napi::Number::New(env, pair.rx_last_avail()));
  o.Set("txLastAvail", Napi::Number::New(env, pair.tx_last_avail()));
  return o;
}

// queuePairBytes(config) -> bytes a driver's region needs for this geometry (validates it).
static Napi::Value QueuePairBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  VRING_TRY
  return Napi::Number::New(env, static_cast<double>(ComputeQueuePairLayout(ArgConfig(env, info[0])).total_bytes));
  VRING_CATCH(env)
}

void InitQueuePairs(Napi::Env env, Napi::Object exports) {
  exports.Set("queuePairBytes", Napi::Function::New(env, QueuePairBytes, "queuePairBytes"));
  exports.Set("DriverQueuePair", QueuePairWrap<DriverQueuePair>::Define(env, "NativeDriverQueuePair"));
  exports.Set("DeviceQueuePair", QueuePairWrap<DeviceQueuePair>::Define(env, "NativeDeviceQueuePair"));
}

}  // namespace vring::binding
