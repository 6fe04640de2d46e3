/* NVML event sets, answered in the client: a set that never delivers an
 * event. Stock nvidia-smi only creates one and frees it; forwarding would
 * hold a real event set on the server for each client (to be freed when the
 * session ends) and let a client block a worker thread in nvmlEventSetWait.
 * So nothing travels: registering for events is NOT_SUPPORTED (no device
 * offers event types through gpuwire), and a wait ends in
 * NVML_ERROR_TIMEOUT after its timeout, as a real set that saw no event. */
#include <stdlib.h>
#include <time.h>

#include "nvml_client.h"

/* What an nvmlEventSet_t points at here; the tag catches a foreign or freed set. */
struct gw_event_set {
    unsigned tag;
};
#define GW_EVENT_SET_TAG 0x67776576u /* "gwev" */
#define GW_EVENT_SET_FREED 0u

static struct gw_event_set *as_set(nvmlEventSet_t set)
{
    struct gw_event_set *s = (struct gw_event_set *)set;
    return s && s->tag == GW_EVENT_SET_TAG ? s : NULL;
}

nvmlReturn_t DECLDIR nvmlEventSetCreate(nvmlEventSet_t *set)
{
    if (!set)
        return NVML_ERROR_INVALID_ARGUMENT;
    struct gw_event_set *s = malloc(sizeof *s);
    if (!s)
        return NVML_ERROR_MEMORY;
    s->tag = GW_EVENT_SET_TAG;
    *set = (nvmlEventSet_t)s;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlEventSetFree(nvmlEventSet_t set)
{
    struct gw_event_set *s = as_set(set);
    if (!s)
        return NVML_ERROR_INVALID_ARGUMENT;
    s->tag = GW_EVENT_SET_FREED;
    free(s);
    return NVML_SUCCESS;
}

/* Nothing is ever delivered: sleep the timeout (the caller's pacing, as natively). */
static nvmlReturn_t wait_nothing(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms)
{
    if (!as_set(set) || !data)
        return NVML_ERROR_INVALID_ARGUMENT;
    struct timespec ts = {(time_t)(timeoutms / 1000u), (long)(timeoutms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) /* a signal: sleep the rest */
        ;
    return NVML_ERROR_TIMEOUT;
}

#undef nvmlEventSetWait
nvmlReturn_t DECLDIR nvmlEventSetWait(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms);
nvmlReturn_t DECLDIR nvmlEventSetWait(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms)
{
    return wait_nothing(set, data, timeoutms);
}

nvmlReturn_t DECLDIR nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms)
{
    return wait_nothing(set, data, timeoutms);
}

nvmlReturn_t DECLDIR nvmlDeviceRegisterEvents(nvmlDevice_t device, unsigned long long eventTypes, nvmlEventSet_t set)
{
    (void)eventTypes;
    if (!device || !as_set(set))
        return NVML_ERROR_INVALID_ARGUMENT;
    return NVML_ERROR_NOT_SUPPORTED;
}

/* No event type can be registered through gpuwire. */
nvmlReturn_t DECLDIR nvmlDeviceGetSupportedEventTypes(nvmlDevice_t device, unsigned long long *eventTypes)
{
    if (!device || !eventTypes)
        return NVML_ERROR_INVALID_ARGUMENT;
    *eventTypes = 0;
    return NVML_SUCCESS;
}
