// Non-blocking AF_UNIX stream sockets that carry file descriptors (SCM_RIGHTS), and the
// length-prefixed message framing of vhost-user (a fixed header holding a u32 payload length).
// The same reader serves the vhost-user protocol and vring's own fd-passing sockets.
//
// Socket names: a name starting with '@' or '\0' is a Linux abstract socket (the first byte
// becomes '\0', nothing is created in the filesystem, the kernel frees the name when the socket
// closes); anything else is a filesystem path.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "vring/error.h"
#include "vring/unique_fd.h"

namespace vring {

// Most fds accepted with one message: vhost-user's limit (8 memory regions per SET_MEM_TABLE,
// "at most 8 descriptors" on the back-end channel), and what DPDK sizes its control buffer for.
constexpr size_t kMaxFdsPerMessage = 8;

// Identity of the socket file a listener created, so that closing the listener removes that
// file and never one another process bound at the same path since.
struct SocketFileId {
  dev_t dev = 0;
  ino_t ino = 0;
  bool valid = false;
};

// Permission bits a listener's socket file gets unless asked otherwise: only its owner (and
// root) may connect.
constexpr mode_t kDefaultSocketMode = 0600;

// Binds and listens (SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC). A leftover socket file at a
// filesystem path that nobody listens on (connect gets ECONNREFUSED) is unlinked and the bind
// retried; a live listener gives kSystem with errno EADDRINUSE. A path that does not fit
// sun_path is kInvalidArgument. When `created` is given it receives the file's identity (left
// invalid for abstract names).
//
// The socket file gets exactly `mode` (permission bits only, whatever the umask) before the
// socket listens: between bind() and listen() a connect() is refused (ECONNREFUSED), so no peer
// can attach while the file still has the umask's mode. Abstract names have no file and no
// mode; only the peer's credentials can guard them.
UniqueFd ListenUnix(const std::string& path, int backlog, SocketFileId* created = nullptr,
                    mode_t mode = kDefaultSocketMode);

// Unlinks `path` if it is still the socket file `id` names. Returns whether it did. Call it
// before closing the listening fd: a bound socket pins its file's inode, so the identity cannot
// be recycled for another file while the listener is open.
bool UnlinkSocketFile(const std::string& path, const SocketFileId& id);

// Connects a non-blocking socket. AF_UNIX connects complete at once or fail: ENOENT and
// ECONNREFUSED mean nobody listens; EAGAIN means the listener's backlog is full (retry later).
// All are kSystem (kPermission for EACCES) with errno set.
UniqueFd ConnectUnix(const std::string& path);

// Who is at the other end of a connected Unix socket, as the kernel recorded it when the
// connection was made (SO_PEERCRED, SO_PEERGROUPS): ids as seen from this process's user and
// PID namespaces (a peer's id that has no mapping here reads as the overflow id, 65534).
struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups; empty where the kernel cannot tell
};

// The credentials of `fd`'s peer. kSystem if the kernel refuses (e.g. not a Unix socket).
PeerCredentials GetPeerCredentials(int fd);

// Accepts one pending connection (non-blocking, CLOEXEC); an invalid UniqueFd when none is
// pending. Connections that died before being accepted are skipped.
UniqueFd AcceptUnix(int listen_fd);

// Message framing: `header_size` bytes of header containing a native-endian u32 payload length
// at `length_offset`, then that many payload bytes. vhost-user: 12 / 8.
struct FramingOptions {
  size_t header_size = 12;
  size_t length_offset = 8;
  size_t max_payload = 4096;
};

// Throws kInvalidArgument unless the length field lies inside the header and max_payload fits
// in the u32 length field.
void ValidateFraming(const FramingOptions& options);

struct Message {
  std::vector<uint8_t> bytes;  // header followed by payload
  std::vector<UniqueFd> fds;   // received with the message, CLOEXEC, at most kMaxFdsPerMessage
};

enum class ReadStatus {
  kMessage,     // *out holds one complete message
  kWouldBlock,  // nothing more to read now; wait for readability
  kEof,         // the peer closed cleanly between messages (report kPeerDisconnected)
};

// Reads framed messages from a non-blocking stream socket, resuming across partial reads.
//
// It never reads past the end of the message in progress: the kernel hands over a sender's fds
// with the bytes of the sendmsg that carried them, so reading one message at a time is what lets
// every received fd be attributed to the right message (DPDK reads the same way). Messages that
// arrive together are returned by successive Read calls without waiting for readiness.
//
// Errors (all thrown as vring::Error; the stream position is then lost, so the caller must
// close the socket, and Read keeps throwing kProtocol with the first error's reason). A
// rejection of what the peer sent carries a reason (Error::reason) naming the input:
//   kPartialMessage    "short-message"      EOF, or a connection reset, in the middle of a
//                                           message (its header included)
//   kFdsTruncated      "too-many-fds"       the kernel dropped fds (MSG_CTRUNC: more than
//                                           kMaxFdsPerMessage sent with one sendmsg)
//   kProtocol          "too-many-fds"       more than kMaxFdsPerMessage fds over the sendmsgs
//                                           of one message
//   kProtocol          "oversized-message"  header's payload length above max_payload
//   kPeerDisconnected  (none)               connection reset between messages
//   kSystem            (none)               any other recvmsg failure
// Every fd received with a message that is rejected is closed.
class MessageReader {
 public:
  explicit MessageReader(int fd, FramingOptions options = {});

  ReadStatus Read(Message* out);

  // True while a message has been started but not completed.
  bool in_message() const { return have_ > 0 || !fds_.empty(); }
  const FramingOptions& options() const { return options_; }

 private:
  [[noreturn]] void Fail(ErrorCode code, const char* reason, const std::string& message,
                         int errnum = 0, const char* syscall = nullptr);
  void TakeFds(struct msghdr* msg);

  int fd_;
  FramingOptions options_;
  std::vector<uint8_t> buf_;
  size_t have_ = 0;
  size_t total_ = 0;  // header + payload once the header is complete, else 0
  std::vector<UniqueFd> fds_;
  bool failed_ = false;
  const char* failed_reason_ = nullptr;
};

enum class SendStatus {
  kComplete,    // every byte (and the fds) went out
  kWouldBlock,  // the socket buffer is full; *sent bytes went out, send the rest when writable
};

// Sends one message with non-blocking sendmsg(MSG_NOSIGNAL), `fds` attached to the first
// sendmsg. On kWouldBlock, *sent says how much went out: if it is 0 nothing (and no fd) was sent
// and the whole call must be repeated; otherwise the fds went out with the first bytes and the
// caller finishes with SendMessage(fd, data + *sent, len - *sent, nullptr, 0, ...). The fds stay
// owned by the caller (the kernel sends duplicates).
// Throws kInvalidArgument for more than kMaxFdsPerMessage fds or fds without data,
// kPeerDisconnected for EPIPE/ECONNRESET, kSystem otherwise (e.g. EBADF for a closed fd).
SendStatus SendMessage(int fd, const uint8_t* data, size_t len, const int* fds, size_t nfds,
                       size_t* sent);

// The same for a message gathered from several buffers (e.g. a header built separately from a
// payload the caller does not want to copy). *sent counts bytes across all buffers.
SendStatus SendMessageV(int fd, const struct iovec* iov, size_t iovcnt, const int* fds, size_t nfds,
                        size_t* sent);

}  // namespace vring
