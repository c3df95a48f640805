// edge_bench's Cortex-M benchmark program: TFLM with the kernels it was
// built with (CMSIS-NN), run bare-metal on a QEMU board with semihosting.
//
// Usage (semihosting command line): runner MODEL INVOKES [INPUT OUTPUT]
//   MODEL    a .tflite file on the host, read through semihosting, or
//            @0xADDRESS: already in memory there (QEMU's loader device put
//            it there; boards whose semihosting cannot read files)
//   INVOKES  inferences to run (>= 1); instructions per inference are the
//            difference of two runs' counts (edge_bench.mcu), so start-up,
//            file reading and preparation cancel out
//   INPUT    raw bytes of the input tensor (default: a fixed pattern), a
//            file or @0xADDRESS as MODEL
//   OUTPUT   where to write the raw bytes of the output tensor after the
//            last inference (for the parity check against LiteRT); "-":
//            print them as "mpath-result output HEX"
// Prints "mpath-result key value" lines: status, arena_bytes, and on a
// refusal the reason TFLM logged.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

// The arena: 1.5 MB in the board's 4 MB of data RAM (the model file takes
// up to about 1.2 MB of the rest). arena_bytes reports what a model used.
constexpr size_t kArenaSize = 1536 * 1024;
alignas(16) uint8_t tensor_arena[kArenaSize];

void log_to_host(const char* text) { fputs(text, stdout); }

// Every op an mpath-tf export can contain (MLPs, CNNs, ResNet-8, each lowering).
using Resolver = tflite::MicroMutableOpResolver<32>;
void add_ops(Resolver& r) {
  r.AddAdd(); r.AddAveragePool2D(); r.AddBatchMatMul(); r.AddConcatenation();
  r.AddConv2D(); r.AddDepthwiseConv2D(); r.AddDequantize(); r.AddFullyConnected();
  r.AddGather(); r.AddLogistic(); r.AddMaxPool2D(); r.AddMean(); r.AddMul();
  r.AddPad(); r.AddQuantize(); r.AddRelu(); r.AddRelu6(); r.AddReshape();
  r.AddSoftmax(); r.AddSplit(); r.AddSplitV(); r.AddStridedSlice(); r.AddSub();
  r.AddTanh(); r.AddTranspose(); r.AddSqueeze(); r.AddExpandDims(); r.AddPack();
  r.AddUnpack(); r.AddShape(); r.AddSum(); r.AddLeakyRelu();
}

long read_file(const char* path, uint8_t** data) {
  FILE* f = fopen(path, "rb");
  if (!f) return -1;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  // 16-byte aligned, as TFLM requires of a model buffer (newlib's
  // aligned_alloc needs posix_memalign, which rdimon lacks: align by hand)
  uint8_t* block = static_cast<uint8_t*>(malloc(size + 16));
  *data = block ? block + (16 - reinterpret_cast<uintptr_t>(block) % 16) % 16 : nullptr;
  if (!*data || fread(*data, 1, size, f) != static_cast<size_t>(size)) size = -1;
  fclose(f);
  return size;
}

// "@0x..." names memory that QEMU's loader device filled; else nullptr.
uint8_t* in_memory(const char* arg) {
  return arg[0] == '@' ? reinterpret_cast<uint8_t*>(strtoul(arg + 1, nullptr, 16)) : nullptr;
}

int fail(const char* status) {
  printf("mpath-result status %s\n", status);
  fflush(stdout);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  RegisterDebugLogCallback(log_to_host);
  if (argc < 3) return fail("usage");
  uint8_t* model_data = in_memory(argv[1]);
  if (!model_data && read_file(argv[1], &model_data) < 0) return fail("unreadable_model");
  const tflite::Model* model = tflite::GetModel(model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) return fail("schema_version");
  static Resolver resolver;
  add_ops(resolver);
  static tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, kArenaSize);
  if (interpreter.AllocateTensors() != kTfLiteOk) return fail("refused");
  printf("mpath-result arena_bytes %u\n", static_cast<unsigned>(interpreter.arena_used_bytes()));

  TfLiteTensor* input = interpreter.input(0);
  if (argc >= 5 && in_memory(argv[3])) {
    memcpy(input->data.raw, in_memory(argv[3]), input->bytes);
  } else if (argc >= 5) {
    uint8_t* given = nullptr;
    long size = read_file(argv[3], &given);
    if (size != static_cast<long>(input->bytes)) return fail("input_size");
    memcpy(input->data.raw, given, input->bytes);
  } else {
    uint32_t state = 12345;  // a fixed pattern; the count does not depend on values
    for (size_t i = 0; i < input->bytes; ++i) {
      state = state * 1103515245u + 12345u;
      input->data.raw[i] = static_cast<char>(state >> 24);
    }
  }
  int invokes = atoi(argv[2]);
  for (int i = 0; i < invokes; ++i) {
    if (interpreter.Invoke() != kTfLiteOk) return fail("invoke_failed");
  }
  if (argc >= 5 && strcmp(argv[4], "-") == 0) {
    TfLiteTensor* output = interpreter.output(0);
    printf("mpath-result output ");
    for (size_t i = 0; i < output->bytes; ++i) printf("%02x", output->data.uint8[i]);
    printf("\n");
  } else if (argc >= 5) {
    TfLiteTensor* output = interpreter.output(0);
    FILE* f = fopen(argv[4], "wb");
    if (!f || fwrite(output->data.raw, 1, output->bytes, f) != output->bytes) return fail("output");
    fclose(f);
  }
  printf("mpath-result status ok\n");
  fflush(stdout);
  return 0;
}
