// libFuzzer harness: MessageReader, the reader of vhost-user messages (and of the fd-passing
// control channel) from a peer's stream socket, fed what a peer can send: bytes split across
// sendmsg calls as the peer likes, fds attached to any of them, and a close at any point.
//
// Checked: every message returned has exactly the length its header announces and at most the
// framing's limit; it carries at most kMaxFdsPerMessage fds; rejections are the documented
// peer errors; after a rejection every later Read fails; and no received fd outlives the
// reader and its messages (a leak shows as the lowest free fd moving).
//
// Input layout: [0] max_payload = 4 * byte (0..1020), then chunks until the input ends:
//   [flags] bit 0-3 fds to attach (0..15, over the limit on purpose), bit 4 close after this
//   chunk, bit 5 read before the next chunk; [len] then len bytes (a zero len sends no data:
//   fds need at least one byte to travel, so such a chunk sends one zero byte).
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "vring/unix_socket.h"

namespace {

using namespace vring;

[[noreturn]] void Violation(const char* what) {
  std::fprintf(stderr, "message_reader_fuzzer: %s\n", what);
  std::abort();
}

// What the harness attaches as the peer's fds.
int NullFd() {
  static const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd < 0) Violation("cannot open /dev/null");
  return fd;
}

int LowestFreeFd() {
  const int fd = ::dup(NullFd());
  if (fd < 0) Violation("dup failed");
  ::close(fd);
  return fd;
}

bool IsPeerError(ErrorCode code) {
  return code == ErrorCode::kPartialMessage || code == ErrorCode::kFdsTruncated || code == ErrorCode::kProtocol ||
         code == ErrorCode::kPeerDisconnected;
}

// Sends one chunk with `nfds` duplicates of /dev/null attached. False when the socket is full.
// Up to the limit this is our own SendMessage; beyond it (which SendMessage refuses, and a
// hostile peer need not) one sendmsg with every fd in a single SCM_RIGHTS message.
bool SendChunk(int fd, const uint8_t* data, size_t len, int nfds) {
  static const uint8_t kZero = 0;
  if (len == 0) {
    data = &kZero;
    len = 1;
  }
  if (static_cast<size_t>(nfds) <= kMaxFdsPerMessage) {
    const std::vector<int> fds(nfds, NullFd());
    size_t sent = 0;
    try {
      return SendMessage(fd, data, len, fds.data(), fds.size(), &sent) == SendStatus::kComplete;
    } catch (const Error&) {
      return false;  // the reader end already closed: nothing more reaches it
    }
  }
  iovec iov{const_cast<uint8_t*>(data), len};
  alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int) * 16)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
  *CMSG_FIRSTHDR(&msg) = cmsghdr{CMSG_LEN(sizeof(int) * nfds), SOL_SOCKET, SCM_RIGHTS};
  std::fill_n(reinterpret_cast<int*>(CMSG_DATA(CMSG_FIRSTHDR(&msg))), nfds, NullFd());
  return ::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) == static_cast<ssize_t>(len);
}

class Harness {
 public:
  Harness(int fd, size_t max_payload) : reader_(fd, Options(max_payload)), max_payload_(max_payload) {}

  // Reads until the socket has nothing more; false once the reader has failed or hit EOF.
  bool Drain() {
    for (;;) {
      Message m;
      ReadStatus status;
      try {
        status = reader_.Read(&m);
      } catch (const Error& e) {
        if (!IsPeerError(e.code())) Violation("a read failed with an error that is not the peer's");
        ExpectFailedForGood();
        return false;
      }
      if (status == ReadStatus::kWouldBlock) return true;
      if (status == ReadStatus::kEof) return false;
      Check(m);
    }
  }

 private:
  static FramingOptions Options(size_t max_payload) {
    FramingOptions o;
    o.max_payload = max_payload;
    return o;
  }

  void Check(const Message& m) const {
    if (m.bytes.size() < 12) Violation("a message shorter than its header was returned");
    uint32_t length;
    std::memcpy(&length, m.bytes.data() + 8, sizeof length);
    if (length > max_payload_) Violation("a message over the payload limit was returned");
    if (m.bytes.size() != 12 + uint64_t{length}) Violation("a message's size differs from its header's");
    if (m.fds.size() > kMaxFdsPerMessage) Violation("a message came with more fds than allowed");
    for (const auto& fd : m.fds) {
      if (::fcntl(fd.get(), F_GETFD) != FD_CLOEXEC) Violation("a received fd is not close-on-exec");
    }
  }

  void ExpectFailedForGood() {
    Message m;
    try {
      reader_.Read(&m);
    } catch (const Error& e) {
      if (e.code() == ErrorCode::kProtocol) return;
    }
    Violation("a reader that failed read on");
  }

  MessageReader reader_;
  size_t max_payload_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // A leaked fd would take the lowest free number (libFuzzer's own fds come and go between
  // runs, so the comparison is within one run).
  const int lowest_free = LowestFreeFd();
  const size_t max_payload = 4u * data[0];
  int ends[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0) Violation("socketpair failed");
  {
    Harness harness(ends[0], max_payload);
    size_t at = 1;
    bool open = true, reading = true;
    while (at + 2 <= size && open && reading) {
      const uint8_t flags = data[at];
      const size_t len = std::min<size_t>(data[at + 1], size - at - 2);
      at += 2;
      if (!SendChunk(ends[1], data + at, len, flags & 15)) reading = harness.Drain();
      at += len;
      if (flags & 16) {
        ::close(ends[1]);
        open = false;
      }
      if (reading && (flags & 32 || !open)) reading = harness.Drain();
    }
    if (open) {
      ::close(ends[1]);
      if (reading) harness.Drain();
    }
  }
  ::close(ends[0]);
  if (LowestFreeFd() != lowest_free) Violation("a received fd leaked");
  return 0;
}
