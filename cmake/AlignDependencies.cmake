# Every third-party dependency is found here, so docs/dependencies.md has one place to match.
find_package(Threads REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(SENTENCEPIECE IMPORTED_TARGET sentencepiece)
# Unicode normalization (NFC/NFKC) for tokenizers: utf8proc is far smaller than ICU.
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
find_package(ZLIB REQUIRED)
find_package(absl REQUIRED)

# LibTorch: Debian's CPU build by default; -DTorch_DIR=<python>/torch/share/cmake/Torch for CUDA.
find_package(Torch REQUIRED)
if(TORCH_CUDA_LIBRARIES OR CUDA_FOUND)
  set(ALIGN_TORCH_CUDA ON)
else()
  set(ALIGN_TORCH_CUDA OFF)
endif()
message(STATUS "align: LibTorch ${Torch_VERSION} at ${Torch_DIR} (CUDA: ${ALIGN_TORCH_CUDA})")

if(ALIGN_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()

if(NOT ALIGN_ENGINE_ONLY)
  find_package(Protobuf REQUIRED)
  find_package(gRPC CONFIG REQUIRED)
  find_package(yaml-cpp REQUIRED)
  find_package(CLI11 CONFIG REQUIRED)
  find_package(prometheus-cpp CONFIG REQUIRED)
  find_package(SQLite3 REQUIRED)
endif()
