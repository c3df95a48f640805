/* A QEMU TCG plugin that counts the guest instructions executed, for
 * edge_bench's Cortex-M targets (``edge_bench.mcu``).
 *
 * Every translated block adds its instruction count to one counter inline
 * each time it executes, so the count is exact and deterministic (QEMU's
 * instruction counting; no sampling). At exit the total is printed to
 * stderr as "mpath-insn-count N".
 *
 * In user mode (qemu-aarch64, edge_bench.arm64; qemu-x86_64,
 * edge_bench.x86_64) a program marks a window by calling close(-4242)
 * before it and close(-4243) after it (harmless calls that fail with
 * EBADF; only the descriptor's 32 bits are compared: x86-64 passes the int
 * zero-extended, aarch64 sign-extended); the instructions between the two marks are
 * printed too, as "mpath-insn-window N", so Python's start-up, whose count
 * varies by millions between runs, is not counted at all.
 *
 * Debian ships QEMU 7.2 without qemu-plugin.h, so the few functions of
 * plugin API version 1 used here are declared below as that header
 * declares them (include/qemu/qemu-plugin.h of QEMU 7.2).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stddef.h>

#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb,
                                    void *userdata);
typedef void (*qemu_plugin_vcpu_syscall_cb_t)(qemu_plugin_id_t id, unsigned int vcpu_index,
                                              int64_t num, uint64_t a1, uint64_t a2,
                                              uint64_t a3, uint64_t a4, uint64_t a5,
                                              uint64_t a6, uint64_t a7, uint64_t a8);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_syscall_cb_t cb);

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;

static uint64_t executed;  /* one vCPU: the boards used have a single core */
static uint64_t window_start, window_end;
static int window_marks;

#define MARK_START ((uint32_t)-4242)
#define MARK_END ((uint32_t)-4243)

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                       uint64_t a7, uint64_t a8)
{
    (void)id; (void)vcpu_index; (void)num; (void)a2; (void)a3; (void)a4; (void)a5; (void)a6;
    (void)a7; (void)a8;
    if ((uint32_t)a1 == MARK_START) {
        window_start = executed;
        window_marks |= 1;
    } else if ((uint32_t)a1 == MARK_END) {
        window_end = executed;
        window_marks |= 2;
    }
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed,
                                             qemu_plugin_tb_n_insns(tb));
}

static void on_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    fprintf(stderr, "mpath-insn-count %" PRIu64 "\n", executed);
    if (window_marks == 3) {
        fprintf(stderr, "mpath-insn-window %" PRIu64 "\n", window_end - window_start);
    }
    fflush(stderr);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    (void)info;
    (void)argc;
    (void)argv;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit, NULL);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    return 0;
}
