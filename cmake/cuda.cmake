# Optional CUDA module mbrl_fast._C_cuda (MBRL_FAST_CUDA = AUTO | ON | OFF).
# AUTO builds it when a CUDA compiler is found; OFF never; ON fails without one.
# It does not link libtorch: the Python side passes raw device pointers and
# torch's current stream as an integer.
if(MBRL_FAST_CUDA STREQUAL "OFF")
  message(STATUS "mbrl_fast: CUDA module disabled (MBRL_FAST_CUDA=OFF)")
  return()
endif()

include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  if(MBRL_FAST_CUDA STREQUAL "ON")
    message(FATAL_ERROR "MBRL_FAST_CUDA=ON but no CUDA compiler (nvcc) was found")
  endif()
  message(STATUS "mbrl_fast: no CUDA compiler found, building the CPU module only")
  return()
endif()

file(GLOB MBRL_FAST_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/csrc/cuda/*.cu)
if(NOT MBRL_FAST_CUDA_SOURCES)
  message(STATUS "mbrl_fast: no CUDA sources yet, skipping _C_cuda")
  return()
endif()

# Before enable_language: it would otherwise default the list to the compiler's own
# (sm_75 with nvcc 13). SASS + PTX for A100 (80) and H100/H200 (90); override with
# -DCMAKE_CUDA_ARCHITECTURES=... (e.g. 100 for Blackwell).
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 80 90)
endif()
enable_language(CUDA)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)

pybind11_add_module(_C_cuda MODULE csrc/cuda/bindings_cuda.cpp ${MBRL_FAST_CUDA_SOURCES})
target_include_directories(_C_cuda PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/csrc/include ${CMAKE_CURRENT_SOURCE_DIR}/csrc)
set_target_properties(_C_cuda PROPERTIES CUDA_RUNTIME_LIBRARY Static)
# --use_fast_math touches only single precision (ftz, approximate div/sqrt, __expf
# intrinsics): the double-precision Box-Muller of csrc/include/philox.h is unaffected
# (see csrc/cuda/noise.cu), and the MLP stays within the fp32 tolerance of the tests.
target_compile_options(_C_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-O3 --use_fast_math -lineinfo>)
install(TARGETS _C_cuda LIBRARY DESTINATION mbrl_fast)
message(STATUS "mbrl_fast: building _C_cuda for sm_${CMAKE_CUDA_ARCHITECTURES}")
