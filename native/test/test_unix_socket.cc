#include <dirent.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "harness.h"
#include "vring/event_fd.h"
#include "vring/unix_socket.h"

using vring::ErrorCode;
using vring::EventFd;
using vring::FramingOptions;
using vring::Message;
using vring::MessageReader;
using vring::ReadStatus;
using vring::SendStatus;
using vring::UniqueFd;

namespace {

int CountOpenFds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) throw harness::Failure{"cannot open /proc/self/fd"};
  int n = 0;
  while (::readdir(d) != nullptr) ++n;
  ::closedir(d);
  return n;
}

struct Pair {
  UniqueFd a, b;
};

Pair SocketPair() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
    throw harness::Failure{"socketpair failed"};
  return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

// A vhost-user-shaped message: request id, flags, payload size, payload.
std::vector<uint8_t> Frame(uint32_t request, const std::string& payload) {
  std::vector<uint8_t> m(12 + payload.size());
  const uint32_t flags = 1, size = static_cast<uint32_t>(payload.size());
  std::memcpy(m.data(), &request, 4);
  std::memcpy(m.data() + 4, &flags, 4);
  std::memcpy(m.data() + 8, &size, 4);
  std::memcpy(m.data() + 12, payload.data(), payload.size());
  return m;
}

std::string PayloadOf(const Message& m) {
  return std::string(m.bytes.begin() + 12, m.bytes.end());
}

void SendAll(int fd, const std::vector<uint8_t>& m, const std::vector<int>& fds = {}) {
  size_t sent = 0;
  EXPECT(vring::SendMessage(fd, m.data(), m.size(), fds.data(), fds.size(), &sent) ==
         SendStatus::kComplete);
  EXPECT_EQ(sent, m.size());
}

// Raw sendmsg of `len` bytes with any number of fds, bypassing SendMessage's checks.
void RawSend(int fd, const uint8_t* data, size_t len, const std::vector<int>& fds) {
  iovec iov{const_cast<uint8_t*>(data), len};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<unsigned char> control(CMSG_SPACE(sizeof(int) * fds.size()) + 1);
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  EXPECT_EQ(::sendmsg(fd, &msg, MSG_NOSIGNAL), static_cast<ssize_t>(len));
}

Message ReadOne(MessageReader& r) {
  Message m;
  EXPECT(r.Read(&m) == ReadStatus::kMessage);
  return m;
}

// Fresh private directory for socket files; removed with everything in it at scope exit.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/vring-sock-XXXXXX";
    if (!::mkdtemp(tmpl)) throw harness::Failure{"mkdtemp failed"};
    path = tmpl;
  }
  ~TempDir() {
    if (DIR* d = ::opendir(path.c_str())) {
      while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name != "." && name != "..") ::unlink((path + "/" + name).c_str());
      }
      ::closedir(d);
    }
    ::rmdir(path.c_str());
  }
};

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

}  // namespace

TEST(socket_message_without_fds_round_trips) {
  Pair p = SocketPair();
  SendAll(p.a.get(), Frame(7, "hello"));
  MessageReader r(p.b.get());
  Message m = ReadOne(r);
  EXPECT_EQ(m.bytes.size(), 17u);
  EXPECT(PayloadOf(m) == "hello");
  uint32_t request;
  std::memcpy(&request, m.bytes.data(), 4);
  EXPECT_EQ(request, 7u);
  EXPECT_EQ(m.fds.size(), 0u);
  EXPECT(r.Read(&m) == ReadStatus::kWouldBlock);
}

TEST(socket_empty_payload_message_round_trips) {
  Pair p = SocketPair();
  SendAll(p.a.get(), Frame(1, ""));
  MessageReader r(p.b.get());
  Message m = ReadOne(r);
  EXPECT_EQ(m.bytes.size(), 12u);
}

TEST(socket_passed_pipe_fd_refers_to_the_same_pipe) {
  Pair p = SocketPair();
  int pipefd[2];
  EXPECT(::pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) == 0);
  UniqueFd read_end(pipefd[0]);
  {
    UniqueFd write_end(pipefd[1]);
    SendAll(p.a.get(), Frame(12, "kick"), {write_end.get()});
  }  // our copy of the write end is gone; only the received one remains
  MessageReader r(p.b.get());
  Message m = ReadOne(r);
  EXPECT_EQ(m.fds.size(), 1u);
  EXPECT(::fcntl(m.fds[0].get(), F_GETFD) & FD_CLOEXEC);  // MSG_CMSG_CLOEXEC
  EXPECT_EQ(::write(m.fds[0].get(), "x", 1), 1);
  char c = 0;
  EXPECT_EQ(::read(read_end.get(), &c, 1), 1);
  EXPECT(c == 'x');
  m.fds.clear();  // closes the last write end: the pipe reports EOF
  EXPECT_EQ(::read(read_end.get(), &c, 1), 0);
}

TEST(socket_eight_eventfds_arrive_in_order) {
  Pair p = SocketPair();
  std::vector<EventFd> originals;
  std::vector<int> raw;
  for (int i = 0; i < 8; ++i) {
    originals.push_back(EventFd::Create());
    raw.push_back(originals.back().fd());
  }
  SendAll(p.a.get(), Frame(5, "mem table"), raw);
  MessageReader r(p.b.get());
  Message m = ReadOne(r);
  EXPECT_EQ(m.fds.size(), 8u);
  for (size_t i = 0; i < 8; ++i) {
    // Signal the i-th received fd i+1 times and find exactly that count on the i-th original.
    EventFd received = EventFd::Adopt(std::move(m.fds[i]));
    for (size_t k = 0; k <= i; ++k) received.Signal();
  }
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(originals[i].Drain(), i + 1);
}

TEST(socket_path_listener_round_trip_with_fds_both_ways) {
  TempDir dir;
  const std::string path = dir.path + "/vu.sock";
  vring::SocketFileId id;
  UniqueFd listener = vring::ListenUnix(path, 16, &id);
  EXPECT(id.valid);
  EXPECT(::fcntl(listener.get(), F_GETFD) & FD_CLOEXEC);
  EXPECT(!vring::AcceptUnix(listener.get()).valid());  // nothing pending yet
  UniqueFd client = vring::ConnectUnix(path);
  UniqueFd server = vring::AcceptUnix(listener.get());
  EXPECT(server.valid());
  EXPECT(::fcntl(server.get(), F_GETFL) & O_NONBLOCK);
  EXPECT(::fcntl(server.get(), F_GETFD) & FD_CLOEXEC);

  EventFd kick = EventFd::Create();
  SendAll(client.get(), Frame(12, "k"), {kick.fd()});
  MessageReader server_reader(server.get());
  Message m = ReadOne(server_reader);
  EventFd(EventFd::Adopt(std::move(m.fds[0]))).Signal();
  EXPECT_EQ(kick.Drain(), 1u);

  EventFd call = EventFd::Create();
  SendAll(server.get(), Frame(13, "c"), {call.fd()});
  MessageReader client_reader(client.get());
  Message reply = ReadOne(client_reader);
  EXPECT_EQ(reply.fds.size(), 1u);
  EventFd::Adopt(std::move(reply.fds[0])).Signal();
  EXPECT_EQ(call.Drain(), 1u);

  EXPECT(vring::UnlinkSocketFile(path, id));
  EXPECT(!Exists(path));
}

TEST(socket_file_mode_is_0600_by_default_whatever_the_umask) {
  TempDir dir;
  const std::string path = dir.path + "/mode.sock";
  const mode_t old = ::umask(0);  // the loosest umask: the listener must not depend on it
  UniqueFd listener = vring::ListenUnix(path, 4);
  ::umask(old);
  struct stat st;
  EXPECT(::lstat(path.c_str(), &st) == 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST(socket_file_mode_can_be_widened_and_is_checked) {
  TempDir dir;
  const std::string path = dir.path + "/wide.sock";
  UniqueFd listener = vring::ListenUnix(path, 4, nullptr, 0660);
  struct stat st;
  EXPECT(::lstat(path.c_str(), &st) == 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_THROWS_CODE(vring::ListenUnix(dir.path + "/setuid.sock", 4, nullptr, 04777),
                     vring::ErrorCode::kInvalidArgument);
}

TEST(socket_peer_credentials_name_the_connecting_process) {
  TempDir dir;
  const std::string path = dir.path + "/cred.sock";
  UniqueFd listener = vring::ListenUnix(path, 4);
  UniqueFd client = vring::ConnectUnix(path);
  UniqueFd server = vring::AcceptUnix(listener.get());
  const vring::PeerCredentials seen_by_server = vring::GetPeerCredentials(server.get());
  EXPECT_EQ(seen_by_server.pid, ::getpid());
  EXPECT_EQ(seen_by_server.uid, ::geteuid());
  EXPECT_EQ(seen_by_server.gid, ::getegid());
  const vring::PeerCredentials seen_by_client = vring::GetPeerCredentials(client.get());
  EXPECT_EQ(seen_by_client.pid, ::getpid());
  EXPECT_EQ(seen_by_client.uid, ::geteuid());
}

TEST(socket_abstract_name_round_trip_leaves_no_file) {
  const std::string name = "@vring-test-" + std::to_string(::getpid());
  vring::SocketFileId id;
  UniqueFd listener = vring::ListenUnix(name, 4, &id);
  EXPECT(!id.valid);
  EXPECT(!Exists(name));
  UniqueFd client = vring::ConnectUnix(name);
  UniqueFd server = vring::AcceptUnix(listener.get());
  SendAll(client.get(), Frame(1, "abstract"));
  MessageReader r(server.get());
  EXPECT(PayloadOf(ReadOne(r)) == "abstract");
  // A second listener on a live abstract name is refused.
  try {
    vring::ListenUnix(name, 4);
    EXPECT(false);
  } catch (const vring::Error& e) {
    EXPECT_EQ(e.errnum(), EADDRINUSE);
  }
}

TEST(socket_message_delivered_one_byte_at_a_time) {
  Pair p = SocketPair();
  EventFd e = EventFd::Create();
  std::vector<uint8_t> m = Frame(9, "split across many reads");
  MessageReader r(p.b.get());
  Message out;
  for (size_t i = 0; i < m.size(); ++i) {
    EXPECT(r.Read(&out) == ReadStatus::kWouldBlock);
    // The fd travels with the first byte, as a sender's first sendmsg carries it.
    RawSend(p.a.get(), m.data() + i, 1, i == 0 ? std::vector<int>{e.fd()} : std::vector<int>{});
  }
  EXPECT(r.Read(&out) == ReadStatus::kMessage);
  EXPECT(out.bytes == m);
  EXPECT_EQ(out.fds.size(), 1u);
  EXPECT(r.Read(&out) == ReadStatus::kWouldBlock);
}

TEST(socket_two_messages_in_one_write_are_read_separately_with_their_fds) {
  Pair p = SocketPair();
  std::vector<uint8_t> both = Frame(1, "first");
  std::vector<uint8_t> second = Frame(2, "second message");
  both.insert(both.end(), second.begin(), second.end());
  EXPECT_EQ(::write(p.a.get(), both.data(), both.size()), static_cast<ssize_t>(both.size()));
  EventFd e = EventFd::Create();
  SendAll(p.a.get(), Frame(3, "third"), {e.fd()});
  MessageReader r(p.b.get());
  Message m1 = ReadOne(r), m2 = ReadOne(r), m3 = ReadOne(r);
  EXPECT(PayloadOf(m1) == "first");
  EXPECT(PayloadOf(m2) == "second message");
  EXPECT(PayloadOf(m3) == "third");
  EXPECT_EQ(m1.fds.size(), 0u);
  EXPECT_EQ(m2.fds.size(), 0u);
  EXPECT_EQ(m3.fds.size(), 1u);
  Message none;
  EXPECT(r.Read(&none) == ReadStatus::kWouldBlock);
}

TEST(socket_eof_between_messages_is_clean) {
  Pair p = SocketPair();
  SendAll(p.a.get(), Frame(1, "last words"));
  p.a.reset();
  MessageReader r(p.b.get());
  EXPECT(PayloadOf(ReadOne(r)) == "last words");
  Message m;
  EXPECT(r.Read(&m) == ReadStatus::kEof);
}

TEST(socket_eof_inside_a_message_is_a_partial_message) {
  Pair p = SocketPair();
  std::vector<uint8_t> m = Frame(1, "cut short");
  EventFd e = EventFd::Create();
  const int before = CountOpenFds();
  RawSend(p.a.get(), m.data(), 14, {e.fd()});  // header + 2 payload bytes, with an fd
  p.a.reset();
  MessageReader r(p.b.get());
  Message out;
  EXPECT_ERROR(r.Read(&out), ErrorCode::kPartialMessage, "short-message");
  EXPECT_EQ(CountOpenFds(), before - 1);  // the peer end is gone and the received fd was closed
  EXPECT_ERROR(r.Read(&out), ErrorCode::kProtocol, "short-message");  // the reader stays failed
}

TEST(socket_eof_inside_a_header_is_a_partial_message) {
  Pair p = SocketPair();
  EXPECT_EQ(::write(p.a.get(), "abcde", 5), 5);
  p.a.reset();
  MessageReader r(p.b.get());
  Message out;
  EXPECT_ERROR(r.Read(&out), ErrorCode::kPartialMessage, "short-message");
}

TEST(socket_reset_between_messages_is_peer_disconnected) {
  Pair p = SocketPair();
  // Closing a socket with unread data makes the kernel reset the connection.
  SendAll(p.b.get(), Frame(1, "never read"));
  p.a.reset();
  MessageReader r(p.b.get());
  Message out;
  EXPECT_ERROR(r.Read(&out), ErrorCode::kPeerDisconnected, nullptr);  // leaving is no bad input
}

TEST(socket_reset_inside_a_message_is_a_partial_message) {
  Pair p = SocketPair();
  std::vector<uint8_t> m = Frame(1, "cut short");
  EXPECT_EQ(::write(p.a.get(), m.data(), 14), 14);
  SendAll(p.b.get(), Frame(1, "never read"));  // unread at close: the kernel resets
  p.a.reset();
  MessageReader r(p.b.get());
  Message out;
  // The 14 bytes still arrive (the reset comes after queued data), then the reset.
  EXPECT_ERROR(r.Read(&out), ErrorCode::kPartialMessage, "short-message");
}

TEST(socket_more_than_eight_fds_is_fds_truncated_and_leaks_nothing) {
  Pair p = SocketPair();
  std::vector<EventFd> nine;
  std::vector<int> raw;
  for (int i = 0; i < 9; ++i) {
    nine.push_back(EventFd::Create());
    raw.push_back(nine.back().fd());
  }
  std::vector<uint8_t> m = Frame(5, "too many");
  const int before = CountOpenFds();
  RawSend(p.a.get(), m.data(), m.size(), raw);
  MessageReader r(p.b.get());
  Message out;
  EXPECT_ERROR(r.Read(&out), ErrorCode::kFdsTruncated, "too-many-fds");
  EXPECT_EQ(CountOpenFds(), before);
}

TEST(socket_fds_over_several_sendmsgs_beyond_eight_are_a_protocol_error) {
  Pair p = SocketPair();
  std::vector<EventFd> fds;
  for (int i = 0; i < 9; ++i) fds.push_back(EventFd::Create());
  std::vector<uint8_t> m = Frame(5, "xy");
  const int before = CountOpenFds();
  RawSend(p.a.get(), m.data(), 1, {fds[0].fd(), fds[1].fd(), fds[2].fd(), fds[3].fd(),
                                   fds[4].fd()});
  RawSend(p.a.get(), m.data() + 1, m.size() - 1,
          {fds[5].fd(), fds[6].fd(), fds[7].fd(), fds[8].fd()});
  MessageReader r(p.b.get());
  Message out;
  const auto read_until_rejected = [&] {
    while (r.Read(&out) == ReadStatus::kWouldBlock) {
    }
  };
  EXPECT_ERROR(read_until_rejected(), ErrorCode::kProtocol, "too-many-fds");
  EXPECT_EQ(CountOpenFds(), before);
}

TEST(socket_oversized_length_is_a_protocol_error_and_closes_its_fds) {
  Pair p = SocketPair();
  FramingOptions o;
  o.max_payload = 64;
  EventFd e = EventFd::Create();
  const int before = CountOpenFds();
  SendAll(p.a.get(), Frame(1, std::string(64, 'a')));  // exactly at the limit: fine
  SendAll(p.a.get(), Frame(2, std::string(65, 'b')), {e.fd()});
  MessageReader r(p.b.get(), o);
  EXPECT_EQ(ReadOne(r).bytes.size(), 12u + 64u);
  Message out;
  EXPECT_ERROR(r.Read(&out), ErrorCode::kProtocol, "oversized-message");
  EXPECT_EQ(CountOpenFds(), before);
}

TEST(socket_custom_framing_with_length_first) {
  Pair p = SocketPair();
  FramingOptions o;
  o.header_size = 4;
  o.length_offset = 0;
  const uint32_t len = 3;
  std::vector<uint8_t> m(7);
  std::memcpy(m.data(), &len, 4);
  std::memcpy(m.data() + 4, "abc", 3);
  SendAll(p.a.get(), m);
  MessageReader r(p.b.get(), o);
  EXPECT(ReadOne(r).bytes == m);
}

TEST(socket_invalid_framing_is_rejected) {
  FramingOptions o;
  o.header_size = 10;
  o.length_offset = 8;
  EXPECT_THROWS_CODE(MessageReader(0, o), ErrorCode::kInvalidArgument);
  o.header_size = 2;
  o.length_offset = 0;
  EXPECT_THROWS_CODE(MessageReader(0, o), ErrorCode::kInvalidArgument);
}

TEST(socket_large_message_completes_across_partial_sends_with_fds_sent_once) {
  Pair p = SocketPair();
  FramingOptions o;
  o.max_payload = 4 << 20;
  std::vector<uint8_t> m = Frame(1, std::string(4 << 20, 'z'));
  EventFd e = EventFd::Create();
  const int fd = e.fd();
  MessageReader r(p.b.get(), o);
  size_t offset = 0;
  bool first = true;
  int would_block = 0;
  Message out;
  ReadStatus rs = ReadStatus::kWouldBlock;
  while (offset < m.size()) {
    size_t sent = 0;
    SendStatus s = vring::SendMessage(p.a.get(), m.data() + offset, m.size() - offset,
                                      first ? &fd : nullptr, first ? 1 : 0, &sent);
    if (sent > 0) first = false;
    offset += sent;
    if (s == SendStatus::kWouldBlock) {
      ++would_block;
      rs = r.Read(&out);  // drains the socket buffer; the message cannot be complete yet
      EXPECT(rs == ReadStatus::kWouldBlock);
    }
  }
  EXPECT(would_block > 0);  // the message really was larger than the socket buffer
  rs = r.Read(&out);
  EXPECT(rs == ReadStatus::kMessage);
  EXPECT(out.bytes == m);
  EXPECT_EQ(out.fds.size(), 1u);
}

TEST(socket_send_gathers_several_buffers) {
  Pair p = SocketPair();
  std::vector<uint8_t> m = Frame(4, "gathered");
  iovec iov[3] = {{m.data(), 5}, {m.data() + 5, 0}, {m.data() + 5, m.size() - 5}};
  size_t sent = 0;
  EXPECT(vring::SendMessageV(p.a.get(), iov, 3, nullptr, 0, &sent) == SendStatus::kComplete);
  EXPECT_EQ(sent, m.size());
  MessageReader r(p.b.get());
  EXPECT(ReadOne(r).bytes == m);
}

TEST(socket_send_refuses_bad_fd_lists) {
  Pair p = SocketPair();
  std::vector<EventFd> fds;
  std::vector<int> raw;
  for (int i = 0; i < 9; ++i) {
    fds.push_back(EventFd::Create());
    raw.push_back(fds.back().fd());
  }
  std::vector<uint8_t> m = Frame(1, "x");
  size_t sent = 0;
  EXPECT_THROWS_CODE(vring::SendMessage(p.a.get(), m.data(), m.size(), raw.data(), 9, &sent),
                     ErrorCode::kInvalidArgument);
  EXPECT_THROWS_CODE(vring::SendMessage(p.a.get(), m.data(), 0, raw.data(), 1, &sent),
                     ErrorCode::kInvalidArgument);
  int closed = EventFd::Create().Release().release();
  ::close(closed);
  EXPECT_THROWS_CODE(vring::SendMessage(p.a.get(), m.data(), m.size(), &closed, 1, &sent),
                     ErrorCode::kSystem);
}

TEST(socket_send_to_a_closed_peer_is_peer_disconnected) {
  Pair p = SocketPair();
  p.b.reset();
  std::vector<uint8_t> m = Frame(1, "anyone?");
  size_t sent = 0;
  EXPECT_THROWS_CODE(vring::SendMessage(p.a.get(), m.data(), m.size(), nullptr, 0, &sent),
                     ErrorCode::kPeerDisconnected);  // and no SIGPIPE killed the test
}

TEST(socket_stale_socket_file_is_replaced) {
  TempDir dir;
  const std::string path = dir.path + "/stale.sock";
  {
    UniqueFd dead = vring::ListenUnix(path, 4);
  }  // closed without unlinking, as after a crash
  EXPECT(Exists(path));
  try {
    vring::ConnectUnix(path);
    EXPECT(false);
  } catch (const vring::Error& e) {
    EXPECT_EQ(e.errnum(), ECONNREFUSED);
  }
  UniqueFd live = vring::ListenUnix(path, 4);
  UniqueFd client = vring::ConnectUnix(path);
  EXPECT(vring::AcceptUnix(live.get()).valid());
}

TEST(socket_live_listener_path_is_address_in_use) {
  TempDir dir;
  const std::string path = dir.path + "/live.sock";
  UniqueFd live = vring::ListenUnix(path, 4);
  try {
    vring::ListenUnix(path, 4);
    EXPECT(false);
  } catch (const vring::Error& e) {
    EXPECT(e.code() == ErrorCode::kSystem);
    EXPECT_EQ(e.errnum(), EADDRINUSE);
  }
  UniqueFd client = vring::ConnectUnix(path);  // the first listener still works
  EXPECT(vring::AcceptUnix(live.get()).valid());
}

TEST(socket_regular_file_at_path_is_never_deleted) {
  TempDir dir;
  const std::string path = dir.path + "/data.txt";
  UniqueFd file(::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  EXPECT(file.valid());
  try {
    vring::ListenUnix(path, 4);
    EXPECT(false);
  } catch (const vring::Error& e) {
    EXPECT_EQ(e.errnum(), EADDRINUSE);
  }
  EXPECT(Exists(path));
}

TEST(socket_unlink_leaves_a_replacement_socket_alone) {
  TempDir dir;
  const std::string path = dir.path + "/replaced.sock";
  vring::SocketFileId first_id;
  UniqueFd first = vring::ListenUnix(path, 4, &first_id);
  // Someone removes our file and binds their own at the same path while we still listen.
  EXPECT(::unlink(path.c_str()) == 0);
  vring::SocketFileId second_id;
  UniqueFd second = vring::ListenUnix(path, 4, &second_id);
  EXPECT(!vring::UnlinkSocketFile(path, first_id));
  EXPECT(Exists(path));
  EXPECT(vring::UnlinkSocketFile(path, second_id));
  EXPECT(!Exists(path));
}

TEST(socket_connect_to_nothing_reports_enoent) {
  TempDir dir;
  try {
    vring::ConnectUnix(dir.path + "/missing.sock");
    EXPECT(false);
  } catch (const vring::Error& e) {
    EXPECT(e.code() == ErrorCode::kSystem);
    EXPECT_EQ(e.errnum(), ENOENT);
    EXPECT(std::string(e.syscall()) == "connect");
  }
}

TEST(socket_path_too_long_for_sun_path_is_invalid_argument) {
  const std::string long_path = "/tmp/" + std::string(103, 'p');  // 108 bytes: no room for NUL
  EXPECT_THROWS_CODE(vring::ListenUnix(long_path, 4), ErrorCode::kInvalidArgument);
  EXPECT_THROWS_CODE(vring::ConnectUnix(long_path), ErrorCode::kInvalidArgument);
  EXPECT_THROWS_CODE(vring::ListenUnix("@" + std::string(108, 'a'), 4), ErrorCode::kInvalidArgument);
  EXPECT_THROWS_CODE(vring::ListenUnix("", 4), ErrorCode::kInvalidArgument);
  EXPECT_THROWS_CODE(vring::ListenUnix("@", 4), ErrorCode::kInvalidArgument);
  // 107 bytes is the longest abstract name that fits alongside the leading NUL.
  UniqueFd ok = vring::ListenUnix("@" + std::string(106, 'b') + std::to_string(::getpid() % 10), 4);
  EXPECT(ok.valid());
}
