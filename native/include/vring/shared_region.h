// Shared memory regions: memfd-backed, sized and faulted in up front, sealed so the
// peer can never shrink them under us (a shrink would turn our next access into SIGBUS).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "vring/unique_fd.h"

namespace vring {

// One mmap(2), unmapped on destruction. Shared by everything that points into it, so
// a ring can never outlive the memory it lives in.
class Mapping {
 public:
  // `granule`: the page size the kernel maps the file in, when it is larger than the base
  // page (a huge page on hugetlbfs); the unmapped length is rounded up to it.
  Mapping(void* base, size_t length, size_t data_offset, size_t granule = 1);
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping();

  uint8_t* data() const { return static_cast<uint8_t*>(base_) + data_offset_; }
  size_t size() const { return length_ - data_offset_; }

 private:
  void* base_;
  size_t length_;
  size_t data_offset_;  // page-alignment slack in front of the requested offset
  size_t granule_;
};

struct MapOptions {
  uint64_t offset = 0;
  // 0 means "from offset to the end of the file".
  uint64_t size = 0;
  // Refuse fds whose size is not sealed against shrinking (our own peers always seal).
  bool require_shrink_seal = true;
};

class SharedRegion {
 public:
  // Largest region we create or map: far above any queue layout, far below overflow.
  static constexpr uint64_t kMaxSize = uint64_t{1} << 40;

  // Creates a sealed memfd of `size` bytes (rounded up to the page size), allocates its
  // pages so a lack of memory fails here, and maps it read/write.
  static SharedRegion Create(uint64_t size, const std::string& name);

  // Maps `[offset, offset+size)` of a memfd received from a peer, after checking the
  // range against fstat and for overflow. The fd is duplicated, never adopted.
  static SharedRegion Map(int fd, const MapOptions& options);

  SharedRegion(SharedRegion&&) = default;
  SharedRegion& operator=(SharedRegion&&) = default;

  int fd() const { return fd_.get(); }
  uint8_t* data() const { return mapping_->data(); }
  uint64_t size() const { return mapping_->size(); }
  uint64_t file_offset() const { return file_offset_; }
  const std::shared_ptr<Mapping>& mapping() const { return mapping_; }

  // Closes the fd; the mapping stays valid while anything still holds it.
  void CloseFd() { fd_.reset(); }

 private:
  SharedRegion(UniqueFd fd, std::shared_ptr<Mapping> mapping, uint64_t file_offset)
      : fd_(std::move(fd)), mapping_(std::move(mapping)), file_offset_(file_offset) {}

  UniqueFd fd_;
  std::shared_ptr<Mapping> mapping_;
  uint64_t file_offset_ = 0;
};

}  // namespace vring
