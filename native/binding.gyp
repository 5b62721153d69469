{
  "targets": [
    {
      "target_name": "vring",
      "sources": [
        "src/error.cc",
        "src/unique_fd.cc",
        "src/shared_region.cc",
        "src/memory_table.cc",
        "src/queue_pair_layout.cc",
        "src/spin_wait.cc",
        "src/driver_queue.cc",
        "src/device_queue.cc",
        "src/inflight_log.cc",
        "src/packed_driver_queue.cc",
        "src/packed_device_queue.cc",
        "src/driver_queue_pair.cc",
        "src/span_allocator.cc",
        "src/block_pool.cc",
        "src/device_queue_pair.cc",
        "src/event_fd.cc",
        "src/unix_socket.cc",
        "binding/addon.cc",
        "binding/js_error.cc",
        "binding/args.cc",
        "binding/region_wrap.cc",
        "binding/queue_pair_wrap.cc",
        "binding/event_fd_wrap.cc",
        "binding/unix_connection_wrap.cc",
        "binding/unix_listener_wrap.cc",
        "binding/poll_handle.cc",
        "binding/scheduler.cc",
        "binding/pooled_copy.cc"
      ],
      "include_dirs": ["include", "<!(node -p \"require(require('path').resolve('../packages/core/node_modules/node-addon-api')).include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "configurations": {
        "Release": {
          "cflags_cc": ["-O2"]
        },
        "Debug": {
          "cflags_cc": ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"],
          "ldflags": ["-fsanitize=address,undefined"]
        }
      }
    }
  ]
}
