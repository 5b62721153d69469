#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "harness.h"
#include "vring/event_fd.h"

using vring::ErrorCode;
using vring::EventFd;
using vring::UniqueFd;

namespace {

bool Readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

}  // namespace

TEST(eventfd_drain_on_fresh_eventfd_returns_zero_without_blocking) {
  EventFd e = EventFd::Create();
  EXPECT(e.valid());
  EXPECT_EQ(e.Drain(), 0u);
  EXPECT(!Readable(e.fd()));
}

TEST(eventfd_signals_accumulate_until_drained) {
  EventFd e = EventFd::Create();
  e.Signal();
  e.Signal();
  e.Signal();
  EXPECT(Readable(e.fd()));
  EXPECT_EQ(e.Drain(), 3u);
  EXPECT(!Readable(e.fd()));
  EXPECT_EQ(e.Drain(), 0u);
}

TEST(eventfd_is_cloexec_and_nonblocking) {
  EventFd e = EventFd::Create();
  EXPECT(::fcntl(e.fd(), F_GETFD) & FD_CLOEXEC);
  EXPECT(::fcntl(e.fd(), F_GETFL) & O_NONBLOCK);
}

TEST(eventfd_signal_on_saturated_counter_is_not_an_error) {
  EventFd e = EventFd::Create();
  const uint64_t almost_full = 0xfffffffffffffffeULL;
  EXPECT_EQ(::write(e.fd(), &almost_full, sizeof almost_full), 8);
  e.Signal();  // would overflow: EAGAIN, ignored
  EXPECT_EQ(e.Drain(), almost_full);
}

TEST(eventfd_adopt_sees_signals_from_the_other_descriptor) {
  EventFd a = EventFd::Create();
  EventFd b = EventFd::Adopt(vring::DupFd(a.fd()));
  b.Signal();
  EXPECT_EQ(a.Drain(), 1u);
}

TEST(eventfd_adopt_makes_a_blocking_eventfd_nonblocking) {
  int raw = ::eventfd(0, EFD_CLOEXEC);
  EXPECT(raw >= 0);
  EventFd e = EventFd::Adopt(UniqueFd(raw));
  EXPECT(::fcntl(e.fd(), F_GETFL) & O_NONBLOCK);
  EXPECT_EQ(e.Drain(), 0u);  // would hang forever if Adopt had not set O_NONBLOCK
}

TEST(eventfd_adopt_rejects_non_eventfds_and_closes_them) {
  int p[2];
  EXPECT(::pipe2(p, O_CLOEXEC) == 0);
  UniqueFd write_end(p[1]);
  EXPECT_THROWS_CODE(EventFd::Adopt(UniqueFd(p[0])), ErrorCode::kInvalidArgument);
  EXPECT(::fcntl(p[0], F_GETFD) < 0);  // the rejected fd was closed, not leaked
  EXPECT_THROWS_CODE(EventFd::Adopt(UniqueFd()), ErrorCode::kInvalidArgument);
}

TEST(eventfd_closed_eventfd_refuses_signal_and_drain) {
  EventFd e = EventFd::Create();
  e.Close();
  EXPECT(!e.valid());
  EXPECT_THROWS_CODE(e.Signal(), ErrorCode::kClosed);
  EXPECT_THROWS_CODE(e.Drain(), ErrorCode::kClosed);
}
