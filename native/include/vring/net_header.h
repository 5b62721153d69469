// virtio_net_hdr_v1 (VIRTIO 1.x §5.1.6): the 12 bytes in front of every frame on a
// virtio-net queue. With VERSION_1 it is always 12 bytes, whether or not mergeable
// receive buffers were negotiated.
#pragma once

#include <cstdint>

namespace vring {

inline constexpr uint32_t kNetHeaderSize = 12;
inline constexpr uint32_t kNetHeaderNumBuffersOffset = 10;

}  // namespace vring
