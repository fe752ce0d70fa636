// SPDX-License-Identifier: MIT
/*
 * Thread domains and parent domains.
 *
 * A thread domain is the application's promise that one thread at a time
 * uses the objects of a parent domain that names it. ivrdma takes the
 * promise and keeps its locks anyway: they are uncontended then, and the
 * queues are shared with other processes whatever the threads do.
 *
 * A parent domain is a PD (its handle is its protection domain's, so MRs
 * of either serve QPs of either, as libibverbs' ibv_initialize_parent_domain
 * has it) that QPs, SRQs and CQs (ibv_create_cq_ex with
 * IBV_CQ_INIT_ATTR_MASK_PD) may be created in. Its allocators are kept and
 * never called: a provider allocates its queue buffers with them, and
 * ivrdma's queues are rings in region chunks (slots.c), which only the
 * region's chunk allocator may hand out; the few private structures it
 * keeps are not queue buffers. ibv_parent_domain_init_attr lets a
 * provider ignore them, and IBV_ALLOCATOR_USE_DEFAULT is what they would
 * have to answer.
 */
#include <errno.h>
#include <stdlib.h>

#include "ivrdma.h"

struct ibv_td *ivrdma_alloc_td(struct ibv_context *context, struct ibv_td_init_attr *attr)
{
	struct ivrdma_td *td;

	if (!attr || attr->comp_mask)
		return ivrdma_fail_null(EINVAL);
	td = calloc(1, sizeof(*td));
	if (!td)
		return ivrdma_fail_null(ENOMEM);
	td->ibv_td.context = context;
	return &td->ibv_td;
}

int ivrdma_dealloc_td(struct ibv_td *ibtd)
{
	struct ivrdma_td *td = to_itd(ibtd);

	if (atomic_load(&td->users))
		return EBUSY; /* a parent domain names it */
	free(td);
	return 0;
}

#define PD_INIT_MASK                                                                               \
	(IBV_PARENT_DOMAIN_INIT_ATTR_ALLOCATORS | IBV_PARENT_DOMAIN_INIT_ATTR_PD_CONTEXT)

static int check_parent_attr(struct ibv_context *context,
			     const struct ibv_parent_domain_init_attr *attr)
{
	if (!attr || !attr->pd || attr->pd->context != context || attr->comp_mask & ~PD_INIT_MASK)
		return EINVAL;
	if (to_ipd(attr->pd)->protection)
		return EINVAL; /* a parent domain's PD is a protection domain */
	if (attr->td && attr->td->context != context)
		return EINVAL;
	if ((attr->comp_mask & IBV_PARENT_DOMAIN_INIT_ATTR_ALLOCATORS) &&
	    (!attr->alloc != !attr->free))
		return EINVAL; /* one without the other could not free what it got */
	return 0;
}

struct ibv_pd *ivrdma_alloc_parent_domain(struct ibv_context *context,
					  struct ibv_parent_domain_init_attr *attr)
{
	int rc = check_parent_attr(context, attr);
	struct ivrdma_pd *pd;

	if (rc)
		return ivrdma_fail_null(rc);
	pd = calloc(1, sizeof(*pd));
	if (!pd)
		return ivrdma_fail_null(ENOMEM);
	pd->protection = to_ipd(attr->pd);
	ivrdma_pd_get(attr->pd);
	if (attr->td) {
		pd->td = to_itd(attr->td);
		atomic_fetch_add(&pd->td->users, 1);
	}
	if (attr->comp_mask & IBV_PARENT_DOMAIN_INIT_ATTR_ALLOCATORS) {
		pd->alloc = attr->alloc; /* kept, never called: see above */
		pd->free = attr->free;
	}
	if (attr->comp_mask & IBV_PARENT_DOMAIN_INIT_ATTR_PD_CONTEXT)
		pd->pd_context = attr->pd_context;
	pd->ibv_pd.context = context;
	pd->ibv_pd.handle = attr->pd->handle;
	return &pd->ibv_pd;
}

/* ibv_dealloc_pd of a parent domain: it lets go of its PD and TD. */
void ivrdma_parent_domain_release(struct ivrdma_pd *pd)
{
	ivrdma_pd_put(&pd->protection->ibv_pd);
	if (pd->td)
		atomic_fetch_sub(&pd->td->users, 1);
}

/* ibv_create_cq_ex's parent_domain: one of this context's parent domains, or EINVAL. */
int ivrdma_cq_parent_check(struct ibv_context *context, struct ibv_pd *pd)
{
	return pd && pd->context == context && to_ipd(pd)->protection ? 0 : EINVAL;
}
