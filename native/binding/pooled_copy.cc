// copyToPooled(source, start, length): a Buffer of its own holding source[start, start +
// length), in memory a process-wide BlockPool takes back once the Buffer is collected. A
// receiver copies each large message out of shared memory this way: into pages that are
// already mapped, where a fresh Buffer would fault in new pages for every message.
#include <napi.h>

#include <cstring>
#include <new>

#include "args.h"
#include "js_error.h"
#include "vring/block_pool.h"

namespace vring::binding {

namespace {

// Free blocks kept at most: about what a receiver of large messages turns over between two
// garbage collections (V8 collects after every 64 MiB or so of new external memory).
constexpr size_t kMaxFreeBytes = 256u << 20;

// One pool for the process (every thread and worker): never destroyed, since a Buffer may be
// collected, and its block given back, while an environment is being torn down.
BlockPool& Pool() {
  static BlockPool* pool = new BlockPool(kMaxFreeBytes);
  return *pool;
}

void GiveBack(Napi::Env, uint8_t* data, size_t* capacity) {
  Pool().Give({data, *capacity});
  delete capacity;
}

Napi::Value CopyToPooled(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  VRING_TRY
  const Bytes source = ArgBytes(env, info[0], "source");
  const uint64_t start = ArgU64(env, info[1], "start");
  const uint64_t length = ArgU64(env, info[2], "length");
  if (start > source.size || length > source.size - start) {
    ThrowInvalidArgument(env, "length", "within the source");
  }
  const BlockPool::Block block = Pool().Take(length);
  if (!block.data) throw std::bad_alloc();
  std::memcpy(block.data, source.data + start, length);
  size_t* capacity = nullptr;
  try {
    capacity = new size_t(block.capacity);
  } catch (...) {
    Pool().Give(block);
    throw;
  }
  // NewOrCopy: where external buffers are not allowed, a copy, and the block goes back now.
  return Napi::Buffer<uint8_t>::NewOrCopy(env, block.data, length, GiveBack, capacity);
  VRING_CATCH(env)
}

Napi::Value TrimPool(const Napi::CallbackInfo& info) {
  Pool().Trim();
  return info.Env().Undefined();
}

}  // namespace

void InitPooledCopy(Napi::Env env, Napi::Object exports) {
  exports.Set("copyToPooled", Napi::Function::New(env, CopyToPooled, "copyToPooled"));
  exports.Set("trimCopyPool", Napi::Function::New(env, TrimPool, "trimCopyPool"));
}

}  // namespace vring::binding
