// SharedRegion: memfd creation and sealing, and mapping an fd received from a peer with
// every range and kind check.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "harness.h"
#include "vring/error.h"
#include "vring/shared_region.h"
#include "vring/unique_fd.h"

using namespace vring;

namespace {

uint64_t Page() { return static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)); }

int CountOpenFds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) throw harness::Failure{"cannot open /proc/self/fd"};
  int n = 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n;
}

MapOptions Opts(uint64_t offset, uint64_t size, bool require_seal = true) {
  MapOptions o;
  o.offset = offset;
  o.size = size;
  o.require_shrink_seal = require_seal;
  return o;
}

// Expects Map to throw `code`; checks the fd count is unchanged (no dup leaked).
void ExpectMapFails(int fd, const MapOptions& o, ErrorCode code, int line) {
  const int before = CountOpenFds();
  try {
    SharedRegion::Map(fd, o);
  } catch (const Error& e) {
    if (e.code() != code) {
      throw harness::Failure{"line " + std::to_string(line) + ": wrong code " + ErrorCodeName(e.code()) + ": " +
                             e.what()};
    }
    if (CountOpenFds() != before) throw harness::Failure{"line " + std::to_string(line) + ": fd leaked"};
    return;
  }
  throw harness::Failure{"line " + std::to_string(line) + ": Map did not throw"};
}

}  // namespace

TEST(shared_region_create_rounds_to_pages_and_is_zeroed_and_writable) {
  SharedRegion r = SharedRegion::Create(1, "t");
  EXPECT_EQ(r.size(), Page());
  EXPECT_EQ(r.file_offset(), 0u);
  EXPECT(r.fd() >= 0);
  for (uint64_t i = 0; i < r.size(); ++i) EXPECT_EQ(r.data()[i], 0);
  r.data()[0] = 1;
  r.data()[r.size() - 1] = 2;
  struct stat st;
  EXPECT_EQ(::fstat(r.fd(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), Page());
  SharedRegion r2 = SharedRegion::Create(Page() + 1, "");
  EXPECT_EQ(r2.size(), 2 * Page());
  SharedRegion r3 = SharedRegion::Create(3 * Page(), "exact");
  EXPECT_EQ(r3.size(), 3 * Page());
}

TEST(shared_region_create_rejects_zero_and_huge_sizes) {
  EXPECT_THROWS_CODE(SharedRegion::Create(0, "t"), ErrorCode::kInvalidArgument);
  EXPECT_THROWS_CODE(SharedRegion::Create(SharedRegion::kMaxSize + 1, "t"), ErrorCode::kInvalidArgument);
  EXPECT_THROWS_CODE(SharedRegion::Create(~uint64_t{0}, "t"), ErrorCode::kInvalidArgument);
  EXPECT_THROWS_CODE(SharedRegion::Create(~uint64_t{0} - Page() + 2, "t"), ErrorCode::kInvalidArgument);
}

TEST(shared_region_create_is_sealed_and_cloexec) {
  SharedRegion r = SharedRegion::Create(2 * Page(), "sealed");
  const int seals = ::fcntl(r.fd(), F_GET_SEALS);
  EXPECT(seals >= 0);
  EXPECT(seals & F_SEAL_SHRINK);
  EXPECT(seals & F_SEAL_GROW);
  EXPECT(seals & F_SEAL_SEAL);
  EXPECT(!(seals & F_SEAL_WRITE));  // both sides write the rings
  EXPECT(::ftruncate(r.fd(), static_cast<off_t>(Page())) != 0);
  EXPECT_EQ(errno, EPERM);
  EXPECT(::ftruncate(r.fd(), static_cast<off_t>(4 * Page())) != 0);
  EXPECT(::fcntl(r.fd(), F_ADD_SEALS, F_SEAL_WRITE) != 0);  // F_SEAL_SEAL: no more seals
  struct stat st;
  EXPECT_EQ(::fstat(r.fd(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 2 * Page());
  EXPECT(::fcntl(r.fd(), F_GETFD) & FD_CLOEXEC);
  // Not named anywhere: the fd is a memfd.
  char link[64], target[256];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", r.fd());
  const ssize_t n = ::readlink(link, target, sizeof target - 1);
  EXPECT(n > 0);
  target[n] = 0;
  EXPECT(std::strncmp(target, "/memfd:", 7) == 0);
}

TEST(shared_region_map_sees_the_same_bytes_at_offset) {
  SharedRegion r = SharedRegion::Create(4 * Page(), "src");
  for (uint64_t i = 0; i < r.size(); ++i) r.data()[i] = static_cast<uint8_t>(i * 7 + i / 4096);
  SharedRegion m = SharedRegion::Map(r.fd(), Opts(Page(), 2 * Page()));
  EXPECT_EQ(m.size(), 2 * Page());
  EXPECT_EQ(m.file_offset(), Page());
  EXPECT(m.fd() >= 0 && m.fd() != r.fd());  // duplicated, never adopted
  EXPECT(::fcntl(m.fd(), F_GETFD) & FD_CLOEXEC);
  EXPECT(std::memcmp(m.data(), r.data() + Page(), 2 * Page()) == 0);
  m.data()[5] = 0xab;  // shared, not private
  EXPECT_EQ(r.data()[Page() + 5], 0xab);
  EXPECT_EQ(m.data()[m.size() - 1], r.data()[3 * Page() - 1]);
}

TEST(shared_region_map_unaligned_offset) {
  SharedRegion r = SharedRegion::Create(3 * Page(), "src");
  for (uint64_t i = 0; i < r.size(); ++i) r.data()[i] = static_cast<uint8_t>(i ^ (i >> 8));
  SharedRegion m = SharedRegion::Map(r.fd(), Opts(Page() + 100, 500));
  EXPECT_EQ(m.size(), 500u);
  EXPECT_EQ(m.file_offset(), Page() + 100);
  EXPECT(std::memcmp(m.data(), r.data() + Page() + 100, 500) == 0);
  SharedRegion tail = SharedRegion::Map(r.fd(), Opts(3 * Page() - 1, 1));
  EXPECT_EQ(tail.size(), 1u);
  EXPECT_EQ(tail.data()[0], r.data()[3 * Page() - 1]);
}

TEST(shared_region_map_size_zero_means_to_the_end) {
  SharedRegion r = SharedRegion::Create(3 * Page(), "src");
  SharedRegion all = SharedRegion::Map(r.fd(), Opts(0, 0));
  EXPECT_EQ(all.size(), 3 * Page());
  SharedRegion rest = SharedRegion::Map(r.fd(), Opts(Page(), 0));
  EXPECT_EQ(rest.size(), 2 * Page());
  SharedRegion odd = SharedRegion::Map(r.fd(), Opts(Page() + 10, 0));
  EXPECT_EQ(odd.size(), 2 * Page() - 10);
  rest.data()[rest.size() - 1] = 9;
  EXPECT_EQ(r.data()[3 * Page() - 1], 9);
}

TEST(shared_region_map_rejects_ranges_beyond_the_file) {
  SharedRegion r = SharedRegion::Create(2 * Page(), "src");
  const uint64_t p = Page();
  ExpectMapFails(r.fd(), Opts(0, 2 * p + 1), ErrorCode::kRegionBounds, __LINE__);
  ExpectMapFails(r.fd(), Opts(p, p + 1), ErrorCode::kRegionBounds, __LINE__);
  ExpectMapFails(r.fd(), Opts(2 * p, 1), ErrorCode::kRegionBounds, __LINE__);
  ExpectMapFails(r.fd(), Opts(2 * p, 0), ErrorCode::kRegionBounds, __LINE__);  // nothing left to map
  ExpectMapFails(r.fd(), Opts(2 * p + 1, 0), ErrorCode::kRegionBounds, __LINE__);
  ExpectMapFails(r.fd(), Opts(100 * p, p), ErrorCode::kRegionBounds, __LINE__);
  // The whole file, exactly, is fine.
  SharedRegion ok = SharedRegion::Map(r.fd(), Opts(0, 2 * p));
  EXPECT_EQ(ok.size(), 2 * p);
}

TEST(shared_region_map_rejects_u64_overflow) {
  SharedRegion r = SharedRegion::Create(4 * Page(), "src");
  const uint64_t p = Page();
  // offset + size wraps to 4096: must not be mistaken for a small in-range mapping.
  ExpectMapFails(r.fd(), Opts(~uint64_t{0} - p + 1, 2 * p), ErrorCode::kRegionBounds, __LINE__);
  ExpectMapFails(r.fd(), Opts(p, ~uint64_t{0} - p + 1), ErrorCode::kRegionBounds, __LINE__);
  ExpectMapFails(r.fd(), Opts(p, ~uint64_t{0}), ErrorCode::kRegionBounds, __LINE__);
  ExpectMapFails(r.fd(), Opts(~uint64_t{0}, 1), ErrorCode::kRegionBounds, __LINE__);
  ExpectMapFails(r.fd(), Opts(uint64_t{1} << 63, p), ErrorCode::kRegionBounds, __LINE__);
}

TEST(shared_region_map_rejects_files_larger_than_max_size_to_the_end) {
  // A sparse 2 TiB memfd: "to the end" would be beyond kMaxSize.
  int raw = ::memfd_create("huge", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  EXPECT(raw >= 0);
  UniqueFd fd(raw);
  if (::ftruncate(fd.get(), static_cast<off_t>(SharedRegion::kMaxSize * 2)) != 0) {
    std::printf("    (skipped: cannot size a sparse memfd to 2 TiB: %s)\n", std::strerror(errno));
    return;
  }
  EXPECT_EQ(::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK), 0);
  ExpectMapFails(fd.get(), Opts(0, 0), ErrorCode::kRegionBounds, __LINE__);
  ExpectMapFails(fd.get(), Opts(0, SharedRegion::kMaxSize + 1), ErrorCode::kRegionBounds, __LINE__);
  SharedRegion small = SharedRegion::Map(fd.get(), Opts(SharedRegion::kMaxSize, Page()));
  EXPECT_EQ(small.size(), Page());
}

TEST(shared_region_map_rejects_non_memfd) {
  int p[2];
  EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]), w(p[1]);
  ExpectMapFails(r.get(), Opts(0, 0), ErrorCode::kNotMemfd, __LINE__);
  ExpectMapFails(w.get(), Opts(0, 4096, false), ErrorCode::kNotMemfd, __LINE__);

  // A regular file on a disk file system (/tmp here is not tmpfs).
  char path[] = "/tmp/vring-test-XXXXXX";
  int f = ::mkstemp(path);
  EXPECT(f >= 0);
  UniqueFd file(f);
  ::unlink(path);
  EXPECT_EQ(::ftruncate(file.get(), 8192), 0);
  ExpectMapFails(file.get(), Opts(0, 0), ErrorCode::kNotMemfd, __LINE__);
  ExpectMapFails(file.get(), Opts(0, 4096, false), ErrorCode::kNotMemfd, __LINE__);

  // /dev/null, a socket-less char device.
  UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  EXPECT(null.valid());
  ExpectMapFails(null.get(), Opts(0, 4096, false), ErrorCode::kNotMemfd, __LINE__);
}

TEST(shared_region_map_rejects_bad_fds) {
  ExpectMapFails(-1, Opts(0, 0), ErrorCode::kInvalidArgument, __LINE__);
  int raw = ::memfd_create("closed", MFD_CLOEXEC);
  EXPECT(raw >= 0);
  ::close(raw);  // now a closed fd number
  ExpectMapFails(raw, Opts(0, 0), ErrorCode::kSystem, __LINE__);
}

TEST(shared_region_map_requires_shrink_seal_when_asked) {
  // Sealable but not sealed.
  int raw = ::memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  EXPECT(raw >= 0);
  UniqueFd fd(raw);
  EXPECT_EQ(::ftruncate(fd.get(), static_cast<off_t>(2 * Page())), 0);
  ExpectMapFails(fd.get(), Opts(0, 0), ErrorCode::kRegionNotSealed, __LINE__);
  // A grow seal alone is not enough.
  EXPECT_EQ(::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_GROW), 0);
  ExpectMapFails(fd.get(), Opts(0, 0), ErrorCode::kRegionNotSealed, __LINE__);
  {
    SharedRegion m = SharedRegion::Map(fd.get(), Opts(0, 0, false));  // foreign peers may not seal
    EXPECT_EQ(m.size(), 2 * Page());
  }
  EXPECT_EQ(::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK), 0);
  SharedRegion m = SharedRegion::Map(fd.get(), Opts(0, 0));
  EXPECT_EQ(m.size(), 2 * Page());

  // A memfd created without MFD_ALLOW_SEALING can never be sealed (F_SEAL_SEAL is preset).
  int raw2 = ::memfd_create("unsealable", MFD_CLOEXEC);
  EXPECT(raw2 >= 0);
  UniqueFd fd2(raw2);
  EXPECT_EQ(::ftruncate(fd2.get(), static_cast<off_t>(Page())), 0);
  ExpectMapFails(fd2.get(), Opts(0, 0), ErrorCode::kRegionNotSealed, __LINE__);
}

TEST(shared_region_mapping_outlives_close_fd_and_the_region) {
  SharedRegion r = SharedRegion::Create(2 * Page(), "close");
  SharedRegion m = SharedRegion::Map(r.fd(), Opts(0, 0));
  const int before = CountOpenFds();
  r.CloseFd();
  EXPECT_EQ(r.fd(), -1);
  EXPECT_EQ(CountOpenFds(), before - 1);
  r.data()[0] = 42;  // still mapped
  EXPECT_EQ(m.data()[0], 42);
  m.CloseFd();
  m.data()[1] = 43;
  EXPECT_EQ(r.data()[1], 43);
  // The shared Mapping keeps the memory alive after the SharedRegion is gone.
  std::shared_ptr<Mapping> keep;
  {
    SharedRegion gone = SharedRegion::Create(Page(), "gone");
    keep = gone.mapping();
    gone.data()[7] = 7;
  }
  EXPECT_EQ(keep->size(), Page());
  EXPECT_EQ(keep->data()[7], 7);
  keep->data()[Page() - 1] = 1;
  // Moving a region moves the fd (closed once).
  SharedRegion a = SharedRegion::Create(Page(), "move");
  const int fd = a.fd();
  SharedRegion b = std::move(a);
  EXPECT_EQ(b.fd(), fd);
}

TEST(shared_region_map_of_a_closed_source_fd_keeps_working) {
  std::unique_ptr<SharedRegion> m;
  uint8_t* src;
  {
    SharedRegion r = SharedRegion::Create(Page(), "src");
    src = r.data();
    src[3] = 3;
    m = std::make_unique<SharedRegion>(SharedRegion::Map(r.fd(), Opts(0, 0)));
  }  // the creator's fd and mapping are gone
  EXPECT_EQ(m->data()[3], 3);
  m->data()[4] = 4;
  EXPECT(m->fd() >= 0);
  struct stat st;
  EXPECT_EQ(::fstat(m->fd(), &st), 0);
}

TEST(shared_region_no_fd_or_mapping_leak_over_1000_cycles) {
  const int before = CountOpenFds();
  for (int i = 0; i < 1000; ++i) {
    SharedRegion r = SharedRegion::Create(Page() * (1 + i % 3), "cycle");
    SharedRegion m = SharedRegion::Map(r.fd(), Opts(i % 2 ? Page() / 2 : 0, 0));
    m.data()[0] = static_cast<uint8_t>(i);
    if (r.data()[i % 2 ? Page() / 2 : 0] != static_cast<uint8_t>(i)) throw harness::Failure{"not shared"};
    try {
      SharedRegion::Map(r.fd(), Opts(0, 100 * Page()));
      throw harness::Failure{"oversized map accepted"};
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kRegionBounds) throw;
    }
  }
  EXPECT_EQ(CountOpenFds(), before);
  // Mappings are released too: the address space did not grow by 1000 regions.
  FILE* maps = std::fopen("/proc/self/maps", "r");
  EXPECT(maps != nullptr);
  int memfd_maps = 0;
  char line[512];
  while (std::fgets(line, sizeof line, maps)) {
    if (std::strstr(line, "/memfd:cycle")) ++memfd_maps;
  }
  std::fclose(maps);
  EXPECT_EQ(memfd_maps, 0);
}

namespace {

constexpr uint64_t kHugePage = uint64_t{2} << 20;

// A hugetlbfs-backed memfd of `pages` 2 MiB pages, as DPDK's --in-memory mode hands one
// over; invalid when no free hugepages are reserved here (the caller then skips).
UniqueFd HugeMemfd(const char* name, uint64_t pages) {
  UniqueFd fd(::memfd_create(name, MFD_CLOEXEC | MFD_HUGETLB | MFD_ALLOW_SEALING));
  if (!fd) return fd;
  if (::ftruncate(fd.get(), static_cast<off_t>(pages * kHugePage)) != 0 ||
      ::posix_fallocate(fd.get(), 0, static_cast<off_t>(pages * kHugePage)) != 0) {
    return UniqueFd();
  }
  return fd;
}

int MapsNaming(const char* name) {
  FILE* maps = std::fopen("/proc/self/maps", "r");
  if (!maps) throw harness::Failure{"cannot open /proc/self/maps"};
  int n = 0;
  char line[512];
  while (std::fgets(line, sizeof line, maps)) {
    if (std::strstr(line, name)) ++n;
  }
  std::fclose(maps);
  return n;
}

}  // namespace

// A hugetlbfs file can only be mapped from a huge page boundary, whatever offset the peer's
// region starts at: the mapping starts at the huge page that holds it.
TEST(shared_region_map_hugetlbfs_at_an_offset_inside_a_huge_page) {
  UniqueFd fd = HugeMemfd("huge-offset", 2);
  if (!fd) {
    std::printf("    (skipped: no free 2 MiB hugepages: reserve some in /proc/sys/vm/nr_hugepages)\n");
    return;
  }
  SharedRegion whole = SharedRegion::Map(fd.get(), Opts(0, 0, false));
  for (uint64_t i = 0; i < whole.size(); i += 4093) whole.data()[i] = static_cast<uint8_t>(i / 4093);
  SharedRegion m = SharedRegion::Map(fd.get(), Opts(kHugePage + Page() + 100, 500, false));
  EXPECT_EQ(m.size(), 500u);
  EXPECT(std::memcmp(m.data(), whole.data() + kHugePage + Page() + 100, 500) == 0);
  SharedRegion first = SharedRegion::Map(fd.get(), Opts(Page(), kHugePage, false));
  EXPECT_EQ(first.size(), kHugePage);
  EXPECT(std::memcmp(first.data(), whole.data() + Page(), kHugePage) == 0);
}

// The kernel rounds a hugetlbfs mapping up to whole huge pages, and refuses to unmap less
// than that: a region smaller than a huge page must still leave nothing mapped.
TEST(shared_region_map_hugetlbfs_smaller_than_a_huge_page_is_unmapped_whole) {
  UniqueFd fd = HugeMemfd("huge-small", 1);
  if (!fd) {
    std::printf("    (skipped: no free 2 MiB hugepages: reserve some in /proc/sys/vm/nr_hugepages)\n");
    return;
  }
  for (int i = 0; i < 8; ++i) {
    SharedRegion m = SharedRegion::Map(fd.get(), Opts(i * Page(), Page(), false));
    m.data()[0] = static_cast<uint8_t>(i);
    EXPECT_EQ(m.size(), Page());
  }
  EXPECT_EQ(MapsNaming("/memfd:huge-small"), 0);
}
