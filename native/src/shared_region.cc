#include "vring/shared_region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "vring/error.h"

namespace vring {

namespace {

uint64_t PageSize() {
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return page;
}

// The granule `fd` can be mapped in: its huge page size on hugetlbfs (DPDK's memory with
// hugepages, a memfd made with MFD_HUGETLB), where mmap takes only offsets on that boundary
// and munmap only whole huge pages; the base page size everywhere else.
uint64_t MapGranule(int fd) {
  struct statfs fs;
  if (::fstatfs(fd, &fs) == 0 && static_cast<uint64_t>(fs.f_type) == HUGETLBFS_MAGIC && fs.f_bsize > 0) {
    return static_cast<uint64_t>(fs.f_bsize);
  }
  return PageSize();
}

}  // namespace

Mapping::Mapping(void* base, size_t length, size_t data_offset, size_t granule)
    : base_(base), length_(length), data_offset_(data_offset), granule_(granule) {}

// munmap of a hugetlbfs mapping fails (and unmaps nothing) unless it covers whole huge
// pages, while mmap rounded the mapping up to them: unmap what the kernel mapped.
Mapping::~Mapping() { ::munmap(base_, (length_ + granule_ - 1) / granule_ * granule_); }

SharedRegion SharedRegion::Create(uint64_t size, const std::string& name) {
  if (size == 0 || size > kMaxSize) {
    throw Error(ErrorCode::kInvalidArgument,
                "region size must be between 1 byte and 1 TiB, got " + std::to_string(size));
  }
  const uint64_t page = PageSize();
  size = (size + page - 1) / page * page;

  UniqueFd fd(::memfd_create(name.empty() ? "vring" : name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) ThrowSystemError("memfd_create", "cannot create shared memory");
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    ThrowSystemError("ftruncate", "cannot size shared memory to " + std::to_string(size) + " bytes");
  }
  // Allocating the pages now makes "out of memory" an error here instead of a SIGBUS
  // on first touch, possibly in the peer.
  if (int rc = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(size)); rc != 0) {
    ThrowSystemError(rc, "fallocate", "cannot allocate " + std::to_string(size) + " bytes of shared memory");
  }
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    ThrowSystemError("fcntl", "cannot seal shared memory");
  }
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd.get(), 0);
  if (base == MAP_FAILED) ThrowSystemError("mmap", "cannot map shared memory");
  return SharedRegion(std::move(fd), std::make_shared<Mapping>(base, size, 0, page), 0);
}

SharedRegion SharedRegion::Map(int fd, const MapOptions& options) {
  if (fd < 0) throw Error(ErrorCode::kInvalidArgument, "fd must be a non-negative integer");
  int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0) {
    if (errno == EINVAL || errno == EBADF) {
      if (errno == EBADF) ThrowSystemError("fcntl", "fd " + std::to_string(fd) + " is not open");
      throw Error(ErrorCode::kNotMemfd, "fd " + std::to_string(fd) + " is not a memfd", EINVAL, "fcntl");
    }
    ThrowSystemError("fcntl", "cannot read the seals of fd " + std::to_string(fd));
  }
  if (options.require_shrink_seal && !(seals & F_SEAL_SHRINK)) {
    throw Error(ErrorCode::kRegionNotSealed,
                "memfd " + std::to_string(fd) + " is not sealed against shrinking; mapping it would let the "
                "peer crash this process with SIGBUS");
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) ThrowSystemError("fstat", "cannot stat fd " + std::to_string(fd));
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  const uint64_t offset = options.offset;
  if (offset > file_size) {
    throw Error(ErrorCode::kRegionBounds, "offset " + std::to_string(offset) + " is beyond the end of the " +
                                              std::to_string(file_size) + "-byte memfd");
  }
  const uint64_t size = options.size == 0 ? file_size - offset : options.size;
  // `offset + size` is never computed directly: it could wrap around 2^64.
  if (size == 0 || size > file_size - offset || size > kMaxSize) {
    throw Error(ErrorCode::kRegionBounds, "range [" + std::to_string(offset) + ", +" + std::to_string(size) +
                                              ") does not fit the " + std::to_string(file_size) +
                                              "-byte memfd");
  }
  const uint64_t page = MapGranule(fd);
  const uint64_t aligned = offset / page * page;
  const uint64_t slack = offset - aligned;
  const uint64_t length = slack + size;
  UniqueFd copy = DupFd(fd);
  void* base = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, copy.get(),
                      static_cast<off_t>(aligned));
  if (base == MAP_FAILED) ThrowSystemError("mmap", "cannot map memfd " + std::to_string(fd));
  return SharedRegion(std::move(copy), std::make_shared<Mapping>(base, length, slack, page), offset);
}

}  // namespace vring
