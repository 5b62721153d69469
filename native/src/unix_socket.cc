#include "vring/unix_socket.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace vring {

namespace {

// Error::reason of each way the reader rejects what the peer sent. Stable: JS matches on them.
constexpr const char kShortMessage[] = "short-message";
constexpr const char kTooManyFds[] = "too-many-fds";
constexpr const char kOversizedMessage[] = "oversized-message";

struct UnixAddress {
  sockaddr_un addr{};
  socklen_t len = 0;
  bool abstract = false;
};

// Printable form of a socket name for error messages (abstract names shown with '@').
std::string DisplayName(const std::string& path) {
  if (!path.empty() && path[0] == '\0') return "@" + path.substr(1);
  return path;
}

UnixAddress MakeAddress(const std::string& path) {
  UnixAddress a;
  a.addr.sun_family = AF_UNIX;
  constexpr size_t kCapacity = sizeof(a.addr.sun_path);
  if (path.empty()) throw Error(ErrorCode::kInvalidArgument, "socket path must not be empty");
  if (path[0] == '@' || path[0] == '\0') {
    // Abstract names are length-delimited, not NUL-terminated, so all of sun_path is usable.
    const size_t name_len = path.size() - 1;
    if (name_len == 0) throw Error(ErrorCode::kInvalidArgument, "abstract socket name must not be empty");
    if (1 + name_len > kCapacity)
      throw Error(ErrorCode::kInvalidArgument,
                  "abstract socket name '" + DisplayName(path) + "' is " + std::to_string(name_len) +
                      " bytes; at most " + std::to_string(kCapacity - 1) + " fit in sun_path");
    a.addr.sun_path[0] = '\0';
    std::memcpy(a.addr.sun_path + 1, path.data() + 1, name_len);
    a.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name_len);
    a.abstract = true;
    return a;
  }
  if (path.find('\0') != std::string::npos)
    throw Error(ErrorCode::kInvalidArgument, "socket path must not contain NUL bytes");
  if (path.size() + 1 > kCapacity)
    throw Error(ErrorCode::kInvalidArgument,
                "socket path '" + path + "' is " + std::to_string(path.size()) + " bytes; at most " +
                    std::to_string(kCapacity - 1) +
                    " fit in sun_path (use a shorter path, e.g. under /tmp or $XDG_RUNTIME_DIR)");
  std::memcpy(a.addr.sun_path, path.data(), path.size());
  a.addr.sun_path[path.size()] = '\0';
  a.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return a;
}

UniqueFd NewStreamSocket() {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowSystemError("socket", "cannot create unix socket");
  return UniqueFd(fd);
}

// -1: connected (someone listens); otherwise the errno of the failed connect.
int ProbeConnect(const UnixAddress& a) {
  UniqueFd probe = NewStreamSocket();
  for (;;) {
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&a.addr), a.len) == 0) return -1;
    if (errno != EINTR) return errno;
  }
}

// Gives the socket file that bind() just created exactly `mode`, and returns its identity.
// Called before listen(): until then a connect() is refused, so the window in which the file
// has the umask's mode admits nobody. fchmodat(AT_SYMLINK_NOFOLLOW) never follows a symlink
// that someone who can write the directory swapped in for our file (such a person could
// replace the socket anyway, which is why the directory itself must be trusted).
SocketFileId RestrictSocketFile(const std::string& path, mode_t mode) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0)
    ThrowSystemError("lstat", "cannot inspect the socket file '" + path + "' just bound");
  if (!S_ISSOCK(st.st_mode))
    throw Error(ErrorCode::kSystem,
                "the socket file '" + path + "' was replaced by something else right after bind",
                EEXIST, "lstat");
  const SocketFileId id{st.st_dev, st.st_ino, true};
  if (::fchmodat(AT_FDCWD, path.c_str(), mode, AT_SYMLINK_NOFOLLOW) != 0) {
    const int err = errno;
    UnlinkSocketFile(path, id);
    ThrowSystemError(err, "fchmodat", "cannot set the mode of socket file '" + path + "'");
  }
  return id;
}

[[noreturn]] void ThrowAddressInUse(const std::string& path, const std::string& why) {
  throw Error(ErrorCode::kSystem, "cannot listen on '" + DisplayName(path) + "': " + why,
              EADDRINUSE, "bind");
}

}  // namespace

UniqueFd ListenUnix(const std::string& path, int backlog, SocketFileId* created, mode_t mode) {
  if (backlog < 0) throw Error(ErrorCode::kInvalidArgument, "listen backlog must be >= 0");
  if ((mode & ~static_cast<mode_t>(0777)) != 0)
    throw Error(ErrorCode::kInvalidArgument, "socket mode must be permission bits only (0..0777)");
  const UnixAddress a = MakeAddress(path);
  for (int attempt = 0;; ++attempt) {
    UniqueFd fd = NewStreamSocket();
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a.addr), a.len) == 0) {
      SocketFileId id;
      if (!a.abstract) id = RestrictSocketFile(path, mode);
      if (::listen(fd.get(), backlog) != 0) {
        int err = errno;
        if (id.valid) UnlinkSocketFile(path, id);
        ThrowSystemError(err, "listen", "cannot listen on '" + DisplayName(path) + "'");
      }
      if (created) *created = id;
      return fd;
    }
    const int err = errno;
    if (err != EADDRINUSE)
      ThrowSystemError(err, "bind", "cannot bind unix socket to '" + DisplayName(path) + "'");
    if (a.abstract) ThrowAddressInUse(path, "the abstract name is in use");
    if (attempt > 0) ThrowAddressInUse(path, "another socket took the path while it was being reused");
    // Something exists at the path. Only a socket file that refuses connections is a leftover of
    // a listener that died without unlinking it; anything else is never deleted.
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) continue;  // gone meanwhile: just retry the bind
    if (!S_ISSOCK(st.st_mode)) ThrowAddressInUse(path, "the path exists and is not a socket");
    const int probe = ProbeConnect(a);
    if (probe == ENOENT) continue;
    if (probe != ECONNREFUSED) ThrowAddressInUse(path, "another process is listening on it");
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      ThrowSystemError("unlink", "cannot remove stale socket file '" + path + "'");
  }
}

bool UnlinkSocketFile(const std::string& path, const SocketFileId& id) {
  if (!id.valid) return false;
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return false;
  if (!S_ISSOCK(st.st_mode) || st.st_dev != id.dev || st.st_ino != id.ino) return false;
  return ::unlink(path.c_str()) == 0;
}

UniqueFd ConnectUnix(const std::string& path) {
  const UnixAddress a = MakeAddress(path);
  UniqueFd fd = NewStreamSocket();
  for (;;) {
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a.addr), a.len) == 0) return fd;
    const int err = errno;
    if (err == EINTR) continue;
    const char* hint = err == ENOENT          ? " (nothing listens at this path)"
                       : err == ECONNREFUSED ? " (the socket exists but nobody listens)"
                       : err == EAGAIN       ? " (the listener's backlog is full; retry)"
                                             : "";
    ThrowSystemError(err, "connect", "cannot connect to '" + DisplayName(path) + "'" + hint);
  }
}

PeerCredentials GetPeerCredentials(int fd) {
  PeerCredentials peer;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    ThrowSystemError("getsockopt", "cannot read the peer's credentials (SO_PEERCRED)");
  peer.pid = cred.pid;
  peer.uid = cred.uid;
  peer.gid = cred.gid;
#ifdef SO_PEERGROUPS
  // The group list can change size between the two calls only if the peer reconnects, which
  // is a new socket; a second ERANGE is taken as "cannot tell".
  for (int attempt = 0; attempt < 2; ++attempt) {
    socklen_t bytes = static_cast<socklen_t>(peer.groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, peer.groups.data(), &bytes) == 0) {
      peer.groups.resize(bytes / sizeof(gid_t));
      return peer;
    }
    if (errno != ERANGE) break;
    peer.groups.resize(bytes / sizeof(gid_t));
  }
  peer.groups.clear();  // an older kernel (before 4.13): the primary gid is all we know
#endif
  return peer;
}

UniqueFd AcceptUnix(int listen_fd) {
  for (;;) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      UniqueFd accepted(fd);
      // A peer that already hung up without sending a byte (ListenUnix's liveness probe,
      // a port scanner) is not a connection worth handing out.
      char byte;
      if (::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0) continue;
      return accepted;
    }
    const int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK) return UniqueFd();
    if (err == EINTR || err == ECONNABORTED) continue;
    ThrowSystemError(err, "accept4", "cannot accept a connection");
  }
}

void ValidateFraming(const FramingOptions& o) {
  if (o.header_size < 4 || o.length_offset > o.header_size - 4)
    throw Error(ErrorCode::kInvalidArgument,
                "the u32 length field (offset " + std::to_string(o.length_offset) +
                    ") must lie inside the " + std::to_string(o.header_size) + "-byte header");
  if (o.header_size > 4096)
    throw Error(ErrorCode::kInvalidArgument, "message header must be at most 4096 bytes");
  if (o.max_payload > UINT32_MAX)
    throw Error(ErrorCode::kInvalidArgument, "max payload must fit the u32 length field");
}

MessageReader::MessageReader(int fd, FramingOptions options) : fd_(fd), options_(options) {
  ValidateFraming(options_);
  buf_.resize(options_.header_size);
}

void MessageReader::Fail(ErrorCode code, const char* reason, const std::string& message, int errnum,
                         const char* syscall) {
  failed_ = true;
  failed_reason_ = reason;
  fds_.clear();
  buf_.clear();
  have_ = total_ = 0;
  throw Error(code, message, errnum, syscall, reason);
}

void MessageReader::TakeFds(struct msghdr* msg) {
  for (cmsghdr* c = CMSG_FIRSTHDR(msg); c != nullptr; c = CMSG_NXTHDR(msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* data = CMSG_DATA(c);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, data + i * sizeof(int), sizeof fd);  // CMSG_DATA need not be int-aligned
      fds_.emplace_back(fd);
    }
  }
}

ReadStatus MessageReader::Read(Message* out) {
  if (failed_)
    throw Error(ErrorCode::kProtocol, "the connection failed earlier and must be closed", 0, nullptr,
                failed_reason_);
  for (;;) {
    const size_t target = total_ != 0 ? total_ : options_.header_size;
    if (buf_.size() < target) buf_.resize(target);
    iovec iov{buf_.data() + have_, target - have_};
    alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t n = ::recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) return ReadStatus::kWouldBlock;
      if (err == ECONNRESET) {
        if (in_message())
          Fail(ErrorCode::kPartialMessage, kShortMessage, "connection reset in the middle of a message",
               err, "recvmsg");
        // Between messages a reset is a way to leave, not a malformed message: no reason.
        Fail(ErrorCode::kPeerDisconnected, nullptr, "the peer reset the connection", err, "recvmsg");
      }
      Fail(ErrorCode::kSystem, nullptr, std::string("cannot read from socket: ") + std::strerror(err),
           err, "recvmsg");
    }
    // Take ownership of whatever fds arrived before anything can throw, so a rejected message
    // closes them.
    TakeFds(&msg);
    if (msg.msg_flags & MSG_CTRUNC)
      Fail(ErrorCode::kFdsTruncated, kTooManyFds,
           "the peer sent more than " + std::to_string(kMaxFdsPerMessage) +
               " fds with one message; the kernel dropped the rest");
    if (fds_.size() > kMaxFdsPerMessage)
      Fail(ErrorCode::kProtocol, kTooManyFds,
           "the peer sent more than " + std::to_string(kMaxFdsPerMessage) + " fds with one message");
    if (n == 0) {
      if (in_message())
        Fail(ErrorCode::kPartialMessage, kShortMessage,
             "the peer closed the connection after " + std::to_string(have_) + " bytes of a message");
      return ReadStatus::kEof;
    }
    have_ += static_cast<size_t>(n);
    if (total_ == 0 && have_ == options_.header_size) {
      uint32_t length;
      std::memcpy(&length, buf_.data() + options_.length_offset, sizeof length);
      if (length > options_.max_payload)
        Fail(ErrorCode::kProtocol, kOversizedMessage,
             "message payload of " + std::to_string(length) + " bytes exceeds the limit of " +
                 std::to_string(options_.max_payload));
      total_ = options_.header_size + length;
    }
    if (total_ != 0 && have_ == total_) {
      buf_.resize(total_);
      out->bytes = std::move(buf_);
      out->fds = std::move(fds_);
      buf_ = std::vector<uint8_t>(options_.header_size);
      fds_.clear();
      have_ = total_ = 0;
      return ReadStatus::kMessage;
    }
  }
}

SendStatus SendMessage(int fd, const uint8_t* data, size_t len, const int* fds, size_t nfds,
                       size_t* sent) {
  iovec iov{const_cast<uint8_t*>(data), len};
  return SendMessageV(fd, &iov, 1, fds, nfds, sent);
}

SendStatus SendMessageV(int fd, const struct iovec* iov, size_t iovcnt, const int* fds, size_t nfds,
                        size_t* sent) {
  if (nfds > kMaxFdsPerMessage)
    throw Error(ErrorCode::kInvalidArgument, "at most " + std::to_string(kMaxFdsPerMessage) +
                                                 " fds can travel with one message, got " +
                                                 std::to_string(nfds));
  size_t total = 0;
  for (size_t i = 0; i < iovcnt; ++i) total += iov[i].iov_len;
  *sent = 0;
  if (total == 0) {
    if (nfds > 0)
      throw Error(ErrorCode::kInvalidArgument, "fds can only travel with at least one byte of data");
    return SendStatus::kComplete;
  }
  std::vector<iovec> rest(iov, iov + iovcnt);
  size_t first = 0;  // first iovec in `rest` with bytes left
  bool fds_pending = nfds > 0;
  alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage)];
  while (*sent < total) {
    while (rest[first].iov_len == 0) ++first;
    msghdr msg{};
    msg.msg_iov = rest.data() + first;
    msg.msg_iovlen = rest.size() - first;
    if (fds_pending) {
      std::memset(control, 0, sizeof control);
      msg.msg_control = control;
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
      std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    const ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) return SendStatus::kWouldBlock;
      if (err == EPIPE || err == ECONNRESET)
        throw Error(ErrorCode::kPeerDisconnected, "the peer closed the connection", err, "sendmsg");
      ThrowSystemError(err, "sendmsg", "cannot send message");
    }
    fds_pending = false;
    size_t left = static_cast<size_t>(n);
    *sent += left;
    while (left > 0) {
      iovec& v = rest[first];
      const size_t step = left < v.iov_len ? left : v.iov_len;
      v.iov_base = static_cast<uint8_t*>(v.iov_base) + step;
      v.iov_len -= step;
      left -= step;
      if (v.iov_len == 0 && left > 0) ++first;
    }
  }
  return SendStatus::kComplete;
}

}  // namespace vring
