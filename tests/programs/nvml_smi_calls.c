/* Test program for the NVML calls stock nvidia-smi makes (issue 14;
 * tests/e2e/test_nvml_smi_calls.py builds it with gcc against nvml.h, no
 * CUDA): loads libnvidia-ml.so.1 by name as nvidia-smi does, calls each
 * getter gpuwire forwards for nvidia-smi and the event-set calls it answers
 * itself, and prints one "key value..." line per answer (the return code
 * first). Against the stand-in NVML every value is a fixed one the test knows. */
#include <dlfcn.h>
#include <nvml.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "../../native/nvml/nvml_extra.h" /* what the pinned nvml.h lacks */

static void *lib;

/* A typed pointer to the library's own symbol (nvml.h's declaration gives the type). */
#define SYM(name) ((__typeof__(&name))sym(#name))
static void *sym(const char *name)
{
    void *p = dlsym(lib, name);
    if (!p) {
        printf("missing %s\n", name);
        fflush(stdout);
    }
    return p;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void strings(nvmlDevice_t h)
{
    char buf[96];
    memset(buf, 'x', sizeof buf);
    int rc = SYM(nvmlDeviceGetInforomImageVersion)(h, buf, sizeof buf);
    printf("inforom_image %d %s\n", rc, buf);
    memset(buf, 'x', sizeof buf);
    rc = SYM(nvmlDeviceGetInforomImageVersion)(h, buf, 4);
    printf("inforom_image_short %d %d\n", rc, buf[0] == 'x');
    rc = SYM(nvmlDeviceGetInforomVersion)(h, NVML_INFOROM_ECC, buf, sizeof buf);
    printf("inforom_ecc %d %s\n", rc, buf);
    rc = SYM(nvmlDeviceGetInforomVersion)(h, NVML_INFOROM_POWER, buf, sizeof buf);
    printf("inforom_power %d\n", rc);
    char gsp[NVML_GSP_FIRMWARE_VERSION_BUF_SIZE];
    rc = SYM(nvmlDeviceGetGspFirmwareVersion)(h, gsp);
    printf("gsp %d %s\n", rc, gsp);
    printf("validate_inforom %d\n", SYM(nvmlDeviceValidateInforom)(h));
}

static void scalars(nvmlDevice_t h)
{
    unsigned u = 0, u2 = 0, u3 = 0;
    int rc = SYM(nvmlDeviceGetBoardId)(h, &u);
    printf("board_id %d %u\n", rc, u);
    rc = SYM(nvmlDeviceGetModuleId)(h, &u);
    printf("module_id %d %u\n", rc, u);
    rc = SYM(nvmlDeviceGetAccountingBufferSize)(h, &u);
    printf("accounting_buffer %d %u\n", rc, u);
    rc = SYM(nvmlDeviceGetGpuMaxPcieLinkGeneration)(h, &u);
    printf("max_pcie_gen %d %u\n", rc, u);
    rc = SYM(nvmlDeviceGetPcieReplayCounter)(h, &u);
    printf("pcie_replay %d %u\n", rc, u);
    nvmlEnableState_t e = 9, e2 = 9;
    rc = SYM(nvmlDeviceGetAccountingMode)(h, &e);
    printf("accounting_mode %d %d\n", rc, (int)e);
    rc = SYM(nvmlDeviceGetRetiredPagesPendingStatus)(h, &e);
    printf("retired_pending %d %d\n", rc, (int)e);
    e = e2 = 9;
    rc = SYM(nvmlDeviceGetAutoBoostedClocksEnabled)(h, &e, &e2);
    printf("auto_boost %d %d %d\n", rc, (int)e, (int)e2);
    nvmlGpuVirtualizationMode_t vm = 9;
    rc = SYM(nvmlDeviceGetVirtualizationMode)(h, &vm);
    printf("virtualization %d %d\n", rc, (int)vm);
    nvmlHostVgpuMode_t hv = 9;
    rc = SYM(nvmlDeviceGetHostVgpuMode)(h, &hv);
    printf("host_vgpu %d %d\n", rc, (int)hv);
    unsigned long long r = 0;
    rc = SYM(nvmlDeviceGetCurrentClocksThrottleReasons)(h, &r);
    printf("throttle_current %d %llu\n", rc, r);
    rc = SYM(nvmlDeviceGetSupportedClocksThrottleReasons)(h, &r);
    printf("throttle_supported %d %llu\n", rc, r);
    unsigned long dur = 0;
    rc = SYM(nvmlDeviceGetLastBBXFlushTime)(h, &r, &dur);
    printf("bbx_flush %d %llu %lu\n", rc, r, dur);
    nvmlDriverModel_t dm = 9, dm2 = 9;
    rc = SYM(nvmlDeviceGetDriverModel_v2)(h, &dm, &dm2);
    printf("driver_model %d %d\n", rc, (int)dm);
    nvmlGpuOperationMode_t g = 9, g2 = 9;
    rc = SYM(nvmlDeviceGetGpuOperationMode)(h, &g, &g2);
    printf("gom %d %d %d\n", rc, (int)g, (int)g2);
    rc = SYM(nvmlDeviceGetEncoderUtilization)(h, &u, &u2);
    printf("enc_util %d %u %u\n", rc, u, u2);
    rc = SYM(nvmlDeviceGetDecoderUtilization)(h, &u, &u2);
    printf("dec_util %d %u %u\n", rc, u, u2);
    rc = SYM(nvmlDeviceGetJpgUtilization)(h, &u, &u2);
    printf("jpg_util %d %u %u\n", rc, u, u2);
    rc = SYM(nvmlDeviceGetOfaUtilization)(h, &u, &u2);
    printf("ofa_util %d %u %u\n", rc, u, u2);
    rc = SYM(nvmlDeviceGetEncoderStats)(h, &u, &u2, &u3);
    printf("enc_stats %d %u %u %u\n", rc, u, u2, u3);
}

static void structs(nvmlDevice_t h)
{
    nvmlBridgeChipHierarchy_t br;
    memset(&br, 0xee, sizeof br);
    int rc = SYM(nvmlDeviceGetBridgeChipInfo)(h, &br);
    printf("bridge %d %u %d %u\n", rc, br.bridgeCount, (int)br.bridgeChipInfo[0].type, br.bridgeChipInfo[0].fwVersion);
    nvmlPdi_t pdi = {.version = nvmlPdi_v1};
    rc = SYM(nvmlDeviceGetPdi)(h, &pdi);
    printf("pdi %d %llx\n", rc, pdi.value);
    pdi.version = 1; /* a version the caller got wrong: NVML's refusal comes back */
    printf("pdi_bad_version %d\n", SYM(nvmlDeviceGetPdi)(h, &pdi));
    nvmlDeviceCapabilities_t caps = {.version = nvmlDeviceCapabilities_v1};
    rc = SYM(nvmlDeviceGetCapabilities)(h, &caps);
    printf("caps %d %u\n", rc, caps.capMask);
    nvmlDeviceAddressingMode_t am = {.version = nvmlDeviceAddressingMode_v1};
    rc = SYM(nvmlDeviceGetAddressingMode)(h, &am);
    printf("addressing %d %u\n", rc, am.value);
    nvmlC2cModeInfo_v1_t c2c = {.isC2cEnabled = 9};
    rc = SYM(nvmlDeviceGetC2cModeInfoV)(h, &c2c);
    printf("c2c %d %u\n", rc, c2c.isC2cEnabled);
    nvmlGpuFabricInfoV_t fab = {.version = nvmlGpuFabricInfo_v3};
    rc = SYM(nvmlDeviceGetGpuFabricInfoV)(h, &fab);
    printf("fabric %d %u %u %02x %u\n", rc, fab.cliqueId, (unsigned)fab.state, fab.clusterUuid[15],
           (unsigned)fab.healthSummary);
    /* an older caller's v2 struct ending where its memory ends (an inaccessible
     * page after it): read or written past, the program dies */
    long page = sysconf(_SC_PAGESIZE);
    unsigned char *two = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (two == MAP_FAILED || mprotect(two + page, (size_t)page, PROT_NONE)) {
        printf("fabric_v2 mmap failed\n");
    } else {
        nvmlGpuFabricInfo_v2_t *old = (nvmlGpuFabricInfo_v2_t *)(two + page - sizeof *old);
        memset(old, 0, sizeof *old);
        old->version = nvmlGpuFabricInfo_v2;
        rc = SYM(nvmlDeviceGetGpuFabricInfoV)(h, (nvmlGpuFabricInfoV_t *)old);
        printf("fabric_v2 %d %u %u\n", rc, old->cliqueId, (unsigned)old->state);
        munmap(two, 2 * (size_t)page);
    }
    nvmlVgpuHeterogeneousMode_t het = {.version = nvmlVgpuHeterogeneousMode_v1};
    rc = SYM(nvmlDeviceGetVgpuHeterogeneousMode)(h, &het);
    printf("vgpu_heterogeneous %d %u\n", rc, het.mode);
    static nvmlGridLicensableFeatures_t grid;
    rc = SYM(nvmlDeviceGetGridLicensableFeatures_v4)(h, &grid);
    printf("grid %d %d %u %d %s\n", rc, grid.isGridLicenseSupported, grid.licensableFeaturesCount,
           (int)grid.gridLicensableFeatures[0].featureCode, grid.gridLicensableFeatures[0].productName);
    nvmlDramEncryptionInfo_t cur = {.version = nvmlDramEncryptionInfo_v1}, pend = cur;
    rc = SYM(nvmlDeviceGetDramEncryptionMode)(h, &cur, &pend);
    printf("dram_encryption %d %d %d\n", rc, (int)cur.encryptionState, (int)pend.encryptionState);
    nvmlWorkloadPowerProfileCurrentProfiles_t wp = {.version = nvmlWorkloadPowerProfileCurrentProfiles_v1};
    rc = SYM(nvmlDeviceWorkloadPowerProfileGetCurrentProfiles)(h, &wp);
    printf("power_profiles %d %u %u %u\n", rc, wp.perfProfilesMask.mask[0], wp.requestedProfilesMask.mask[0],
           wp.enforcedProfilesMask.mask[0]);
    nvmlMarginTemperature_t mt = {.version = nvmlMarginTemperature_v1};
    rc = SYM(nvmlDeviceGetMarginTemperature)(h, &mt);
    printf("margin_temp %d %d\n", rc, mt.marginTemperature);
    nvmlFBCStats_t fbc = {0};
    rc = SYM(nvmlDeviceGetFBCStats)(h, &fbc);
    printf("fbc %d %u %u %u\n", rc, fbc.sessionsCount, fbc.averageFPS, fbc.averageLatency);
    nvmlMemory_t cc = {0};
    rc = SYM(nvmlDeviceGetConfComputeProtectedMemoryUsage)(h, &cc);
    printf("cc_memory %d %llu %llu %llu\n", rc, cc.total, cc.used, cc.free);
    nvmlRowRemapperHistogramValues_t hist = {0};
    rc = SYM(nvmlDeviceGetRowRemapperHistogram)(h, &hist);
    printf("remap_histogram %d %u %u %u %u %u\n", rc, hist.max, hist.high, hist.partial, hist.low, hist.none);
    nvmlRemappedRowsInfo_v2_t rows;
    memset(&rows, 0xee, sizeof rows);
    rc = SYM(nvmlDeviceGetRemappedRows_v2)(h, &rows);
    printf("remapped_rows %d %u %u %u %u %u %u\n", rc, rows.corrActiveRemaps, rows.corrInactiveRemaps,
           rows.uncActiveRemaps, rows.uncInactiveRemaps, rows.bPending, rows.bFailureOccurred);
    nvmlUnrepairableMemoryStatus_v1_t unrep = {0};
    rc = SYM(nvmlDeviceGetUnrepairableMemoryFlag_v1)(h, &unrep);
    printf("unrepairable %d %u\n", rc, unrep.bUnrepairableMemory);
    nvmlRepairStatus_t rep = {.version = nvmlRepairStatus_v1};
    rc = SYM(nvmlDeviceGetRepairStatus)(h, &rep);
    printf("repair %d %u %u\n", rc, rep.bChannelRepairPending, rep.bTpcRepairPending);
    nvmlEccSramErrorStatus_t sram = {.version = nvmlEccSramErrorStatus_v1};
    rc = SYM(nvmlDeviceGetSramEccErrorStatus)(h, &sram);
    printf("sram %d %llu %llu %u\n", rc, sram.aggregateCor, sram.volatileCor, sram.version == nvmlEccSramErrorStatus_v1);
}

static void arrays(nvmlDevice_t h)
{
    nvmlFieldValue_t fv[3];
    memset(fv, 0, sizeof fv);
    fv[0].fieldId = NVML_FI_DEV_ECC_CURRENT;
    fv[1].fieldId = 7;
    fv[1].scopeId = 2;
    fv[2].fieldId = 0; /* refused in its own entry */
    int rc = SYM(nvmlDeviceGetFieldValues)(h, 3, fv);
    printf("fields %d %llu %llu %d %d\n", rc, fv[0].value.ullVal, fv[1].value.ullVal, (int)fv[2].nvmlReturn,
           (int)fv[1].valueType);
    printf("fields_none %d\n", SYM(nvmlDeviceGetFieldValues)(h, 0, NULL));

    unsigned long long c = 0;
    rc = SYM(nvmlDeviceGetTotalEccErrors)(h, NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_AGGREGATE_ECC, &c);
    printf("total_ecc %d %llu\n", rc, c);
    rc = SYM(nvmlDeviceGetMemoryErrorCounter)(h, NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_AGGREGATE_ECC,
                                              NVML_MEMORY_LOCATION_DRAM, &c);
    printf("mem_error_counter %d %llu\n", rc, c);

    /* the usual two calls: the count needed, then the pages */
    unsigned n = 0;
    rc = SYM(nvmlDeviceGetRetiredPages)(h, NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR, &n, NULL);
    printf("retired_probe %d %u\n", rc, n);
    unsigned long long pages[8] = {0};
    n = 8;
    rc = SYM(nvmlDeviceGetRetiredPages)(h, NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR, &n, pages);
    printf("retired %d %u %llx %llx %llx %llu\n", rc, n, pages[0], pages[1], pages[2], pages[3]);
    n = 8;
    rc = SYM(nvmlDeviceGetRetiredPages)(h, NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS, &n, pages);
    printf("retired_single %d %u\n", rc, n);
}

static void events(nvmlDevice_t h)
{
    nvmlEventSet_t set = NULL;
    int rc = SYM(nvmlEventSetCreate)(&set);
    printf("event_create %d %d\n", rc, set != NULL);
    printf("event_register %d\n", SYM(nvmlDeviceRegisterEvents)(h, nvmlEventTypeXidCriticalError, set));
    unsigned long long types = 99;
    rc = SYM(nvmlDeviceGetSupportedEventTypes)(h, &types);
    printf("event_types %d %llu\n", rc, types);
    nvmlEventData_t data;
    double t0 = now_ms();
    rc = SYM(nvmlEventSetWait_v2)(set, &data, 50);
    printf("event_wait %d %d\n", rc, now_ms() - t0 >= 45.0);
    printf("event_free %d\n", SYM(nvmlEventSetFree)(set));
    printf("event_free_null %d\n", SYM(nvmlEventSetFree)(NULL));
    printf("event_create_null %d\n", SYM(nvmlEventSetCreate)(NULL));
}

int main(void)
{
    lib = dlopen("libnvidia-ml.so.1", RTLD_NOW);
    if (!lib) {
        printf("dlopen %s\n", dlerror());
        return 1;
    }
    printf("init %d\n", SYM(nvmlInit_v2)());
    nvmlDevice_t h = NULL;
    printf("handle %d\n", SYM(nvmlDeviceGetHandleByIndex_v2)(0, &h));
    strings(h);
    scalars(h);
    structs(h);
    arrays(h);
    events(h);
    printf("shutdown %d\n", SYM(nvmlShutdown)());
    return 0;
}
