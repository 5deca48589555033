/* The interface between the firmware core and a compiled model.
 *
 * A model library (generated C: weights, a static arena, the network) implements the functions
 * below; the RPC core (qmcu_server.c) calls nothing else. The model owns its input and output
 * buffers, so a code generator may place them inside its arena. Any model that implements this
 * header can be dropped into a project: see micro_project/PROTOCOL.md, "Model interface". */
#ifndef QMCU_MODEL_API_H
#define QMCU_MODEL_API_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QMCU_MODEL_API_VERSION 1u

typedef struct {
    uint32_t api_version;      /* QMCU_MODEL_API_VERSION the model was generated for */
    const char *name;          /* e.g. "mbv2-fmnist" */
    const char *hash;          /* hex digest of weights + quantization policy */
    uint8_t *input;            /* input_bytes bytes, written by the host before a run */
    uint8_t *output;           /* output_bytes bytes, valid after a successful run */
    uint32_t input_bytes;
    uint32_t output_bytes;
    uint32_t arena_bytes;      /* static working memory of the model (peak SRAM planned) */
    uint32_t n_kernels;        /* ids 0..n_kernels-1 accepted by qmcu_run_kernel */
} qmcu_model_desc_t;

/* The model's description; the pointer stays valid for the program's lifetime. */
const qmcu_model_desc_t *qmcu_model_describe(void);

/* Run the network on desc->input, writing desc->output. Returns 0 on success, or a negative
 * model-specific error code (reported to the host as a device error). */
int qmcu_run(const uint8_t *input, uint8_t *output);

/* Optional (tuning): run one kernel of the model, reading `input` (the model input buffer, as
 * uploaded by the host) and writing `output`. Returns 0 on success, QMCU_KERNEL_UNKNOWN for an
 * id the model does not have. The core links a weak default that knows no kernels. */
#define QMCU_KERNEL_UNKNOWN (-1000)
int qmcu_run_kernel(uint32_t kernel_id, const uint8_t *input, uint8_t *output);

#ifdef __cplusplus
}
#endif
#endif
