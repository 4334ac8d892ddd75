/*
 * The slice of the TVM / DLPack C ABI that a DLR model's kernel library needs.
 *
 * The TVM graph executor inside libdlr calls each "tvm_op" node's kernel as a packed function
 *     int f(TVMValue* args, int* type_codes, int num_args,
 *           TVMValue* out_ret_value, int* out_ret_tcode, void* resource_handle);
 * with args = the node's input DLTensors followed by its output DLTensor (type code 7).
 * A kernel returns 0, or -1 after reporting a message with ggic_fail()/ggic_failf().
 *
 * Layout of DLTensor on LP64 (checked below): data 0, device {i32 type, i32 id} 8, ndim 16,
 * dtype {u8 code, u8 bits, u16 lanes} 20, shape 24, strides 32, byte_offset 40.
 */
#ifndef GGIC_TVM_ABI_H_
#define GGIC_TVM_ABI_H_

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int32_t device_type; /* 1 = CPU */
  int32_t device_id;
} DLDevice;

typedef struct {
  uint8_t code; /* 0 int, 1 uint, 2 float */
  uint8_t bits;
  uint16_t lanes;
} DLDataType;

typedef struct {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides; /* NULL: compact row-major */
  uint64_t byte_offset;
} DLTensor;

typedef union {
  int64_t v_int64;
  double v_float64;
  void* v_handle;
  const char* v_str;
  DLDataType v_type;
  DLDevice v_device;
} TVMValue;

enum { GGIC_DL_INT = 0, GGIC_DL_UINT = 1, GGIC_DL_FLOAT = 2 };
enum { GGIC_TYPE_DLTENSOR_HANDLE = 7 };

#ifdef __cplusplus
#define GGIC_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define GGIC_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

typedef int (*GgicPackedFunc)(TVMValue* args, int* type_codes, int num_args,
                              TVMValue* out_ret_value, int* out_ret_tcode,
                              void* resource_handle);

/* dlpack's layout: 64-bit targets (x86_64, aarch64), and 32-bit ARM EABI (armv7l), where
 * pointers take 4 bytes and byte_offset is 8-aligned */
#if UINTPTR_MAX > 0xFFFFFFFFu
GGIC_STATIC_ASSERT(offsetof(DLTensor, data) == 0, "DLTensor.data offset");
GGIC_STATIC_ASSERT(offsetof(DLTensor, device) == 8, "DLTensor.device offset");
GGIC_STATIC_ASSERT(offsetof(DLTensor, ndim) == 16, "DLTensor.ndim offset");
GGIC_STATIC_ASSERT(offsetof(DLTensor, dtype) == 20, "DLTensor.dtype offset");
GGIC_STATIC_ASSERT(offsetof(DLTensor, shape) == 24, "DLTensor.shape offset");
GGIC_STATIC_ASSERT(offsetof(DLTensor, strides) == 32, "DLTensor.strides offset");
GGIC_STATIC_ASSERT(offsetof(DLTensor, byte_offset) == 40, "DLTensor.byte_offset offset");
#else
GGIC_STATIC_ASSERT(offsetof(DLTensor, data) == 0, "DLTensor.data offset");
GGIC_STATIC_ASSERT(offsetof(DLTensor, device) == 4, "DLTensor.device offset");
GGIC_STATIC_ASSERT(offsetof(DLTensor, ndim) == 12, "DLTensor.ndim offset");
GGIC_STATIC_ASSERT(offsetof(DLTensor, dtype) == 16, "DLTensor.dtype offset");
GGIC_STATIC_ASSERT(offsetof(DLTensor, shape) == 20, "DLTensor.shape offset");
GGIC_STATIC_ASSERT(offsetof(DLTensor, strides) == 24, "DLTensor.strides offset");
GGIC_STATIC_ASSERT(offsetof(DLTensor, byte_offset) == 32, "DLTensor.byte_offset offset");
#endif
GGIC_STATIC_ASSERT(sizeof(TVMValue) == 8, "TVMValue size");

#define GGIC_EXPORT __attribute__((visibility("default")))

/* Declare (and define, with the body that follows) an exported packed-function kernel. */
#define GGIC_KERNEL(name)                                                               \
  GGIC_EXPORT int name(TVMValue* args, int* type_codes, int num_args,                   \
                       TVMValue* out_ret_value, int* out_ret_tcode, void* resource_handle)

/* Silence unused-parameter warnings for the ABI arguments a kernel does not use. */
#define GGIC_UNUSED_ABI_ARGS() \
  ((void)out_ret_value, (void)out_ret_tcode, (void)resource_handle)

/*
 * Set by the TVM runtime when it loads the library (it looks the symbol up and stores its
 * error setter here). Weak, so every translation unit may include this header.
 */
GGIC_EXPORT __attribute__((weak)) void (*__TVMAPISetLastError)(const char*) = NULL;

/* Report msg through the runtime (DLR raises it from run()) and return -1. */
static inline int ggic_fail(const char* msg) {
  if (__TVMAPISetLastError != NULL) __TVMAPISetLastError(msg);
  return -1;
}

#define GGIC_FAILF(...)                                  \
  do {                                                   \
    char ggic_msg_[512];                                 \
    snprintf(ggic_msg_, sizeof ggic_msg_, __VA_ARGS__);  \
    return ggic_fail(ggic_msg_);                         \
  } while (0)

/* The i-th argument as a DLTensor*. */
#define GGIC_TENSOR(i) ((DLTensor*)args[(i)].v_handle)

/* Check the argument count and that all arguments are DLTensors; on mismatch fail. */
#define GGIC_EXPECT_ARGS(kernel, n)                                                        \
  do {                                                                                     \
    if (num_args != (n))                                                                   \
      GGIC_FAILF("%s: expected %d tensor arguments, got %d", (kernel), (n), num_args);     \
    for (int ggic_i_ = 0; ggic_i_ < num_args; ++ggic_i_)                                   \
      if (type_codes[ggic_i_] != GGIC_TYPE_DLTENSOR_HANDLE)                                \
        GGIC_FAILF("%s: argument %d has type code %d, expected a DLTensor", (kernel),      \
                   ggic_i_, type_codes[ggic_i_]);                                          \
  } while (0)

/* Number of elements of a tensor. */
static inline int64_t ggic_numel(const DLTensor* t) {
  int64_t n = 1;
  for (int32_t i = 0; i < t->ndim; ++i) n *= t->shape[i];
  return n;
}

/* Start of the tensor's elements (data + byte_offset). */
static inline void* ggic_data(const DLTensor* t) {
  return (char*)t->data + t->byte_offset;
}

/* 1 when t is a compact float32 tensor on the CPU. */
static inline int ggic_is_f32(const DLTensor* t) {
  return t->dtype.code == GGIC_DL_FLOAT && t->dtype.bits == 32 && t->dtype.lanes == 1;
}

#ifdef __cplusplus
}
#endif

#endif /* GGIC_TVM_ABI_H_ */
