import { Cron } from 'croner';
import { z } from 'zod';
import { displayTextSchema, labelsSchema } from '../core/names.js';

/**
 * The Stack document: Kubernetes-style `apiVersion` / `kind: Stack` /
 * `metadata` / `spec`. This schema is the source of truth for validation,
 * TypeScript types and the OpenAPI description of stack bodies.
 *
 * Strings anywhere in resource specs, `count`, `forEach`, step fields and
 * outputs may hold CEL templates: `${ resources.net.outputs.id }`. A string
 * that is exactly one `${ … }` takes the expression's type (number, list,
 * map); otherwise the results are interpolated into the string. `$${` writes
 * a literal `${`.
 */

export const API_VERSION = 'infraflow.dev/v1';

const NAME_RE = /^[a-z][a-z0-9-]{0,62}$/;
const nameSchema = z.string().regex(NAME_RE, 'must be lowercase letters, digits and dashes, starting with a letter (at most 63 characters)');
const identRe = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const identSchema = z.string().regex(identRe, 'must be an identifier usable in expressions: letters, digits and underscores, not starting with a digit');

export const ParameterSchema = z.strictObject({
  type: z.enum(['string', 'integer', 'number', 'boolean', 'list', 'map']).default('string'),
  description: z.string().optional(),
  default: z.unknown().optional(),
  /** Allowed values. */
  enum: z.array(z.union([z.string(), z.number(), z.boolean()])).optional(),
  minimum: z.number().optional(),
  maximum: z.number().optional(),
  /** Shown as `(sensitive)` in plans and never logged. */
  sensitive: z.boolean().optional(),
});
export type ParameterDef = z.infer<typeof ParameterSchema>;

const secondsSchema = z.number().int().positive();

const StepBase = {
  /** Unique within its list; later steps read results as `steps.<name>`. */
  name: identSchema,
  /** CEL condition; the step is skipped when it is false. */
  when: z.string().optional(),
  timeoutSeconds: secondsSchema.optional(),
  /** Attempts after the first on failure. */
  retries: z.number().int().min(0).max(20).optional(),
};

export const HttpStepSchema = z.strictObject({
  ...StepBase,
  type: z.literal('http'),
  url: z.string().min(1),
  method: z.enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD']).default('GET'),
  headers: z.record(z.string(), z.string()).optional(),
  /** Templated; objects are sent as JSON. */
  body: z.unknown().optional(),
  /** Accepted response statuses; default any 2xx. */
  expectStatus: z.array(z.number().int().min(100).max(599)).optional(),
});

export const ShellStepSchema = z.strictObject({
  ...StepBase,
  type: z.literal('shell'),
  script: z.string().min(1),
  shell: z.string().default('/bin/sh'),
  env: z.record(z.string(), z.string()).optional(),
});

export const AutomationStepSchema = z.strictObject({
  ...StepBase,
  type: z.literal('automation'),
  /** `ansible` runs the real `ansible-playbook`. */
  engine: z.literal('ansible').default('ansible'),
  /** An inline playbook (list of plays) or a path relative to the stack file. */
  playbook: z.union([z.string().min(1), z.array(z.record(z.string(), z.unknown())).min(1)]),
  /** Inventory hosts (templated); default the local host with a local connection. */
  hosts: z.union([z.string(), z.array(z.string())]).optional(),
  extraVars: z.record(z.string(), z.unknown()).optional(),
});

export const WaitUntilStepSchema = z.strictObject({
  ...StepBase,
  type: z.literal('waitUntil'),
  /** CEL over `resources.<name>.status` (re-read on every check) and `params`. */
  condition: z.string().min(1),
  intervalSeconds: secondsSchema.default(5),
});

export const ApprovalStepSchema = z.strictObject({
  ...StepBase,
  type: z.literal('approval'),
  message: z.string().default('approval required'),
  /** When no answer came within timeoutSeconds (default 7 days): `reject` fails the apply (default), `approve` goes on. */
  onTimeout: z.enum(['reject', 'approve']).default('reject'),
});

export const NotifyStepSchema = z.strictObject({
  ...StepBase,
  type: z.literal('notify'),
  url: z.string().min(1),
  /** CloudEvents `type`. */
  eventType: z.string().default('dev.infraflow.stack.notification'),
  /** CloudEvents `source`; default `/stacks/<name>`. */
  source: z.string().optional(),
  data: z.unknown().optional(),
  headers: z.record(z.string(), z.string()).optional(),
});

export const StepSchema = z.discriminatedUnion('type', [
  HttpStepSchema, ShellStepSchema, AutomationStepSchema, WaitUntilStepSchema, ApprovalStepSchema, NotifyStepSchema,
]);
export type StepDef = z.infer<typeof StepSchema>;
export type StepType = StepDef['type'];

const stepList = z.array(StepSchema);

export const PerInstanceSchema = z.strictObject({
  /** The resource (instance array) whose instances this runs for. */
  resource: nameSchema,
  /** `before` the instance is created, `after` it is ready, or `instead` of the provider's provisioning. */
  stage: z.enum(['before', 'after', 'instead']).default('after'),
  steps: stepList.min(1),
});
export type PerInstanceDef = z.infer<typeof PerInstanceSchema>;

export const WorkflowsSchema = z.strictObject({
  preDeploy: stepList.optional(),
  perInstance: z.array(PerInstanceSchema).optional(),
  postDeploy: stepList.optional(),
  onFailure: stepList.optional(),
});
export type WorkflowsDef = z.infer<typeof WorkflowsSchema>;

export const ResourceDefSchema = z.strictObject({
  /** `<domain>/<Type>`, e.g. `compute/Server`. */
  kind: z.string().regex(/^[a-z][a-z0-9]*\/[A-Z][A-Za-z0-9]*$/, 'must be <domain>/<Type>, e.g. compute/Server'),
  spec: z.record(z.string(), z.unknown()).default({}),
  /** Number of instances (or a CEL template giving one); instances are addressed `name[0]`, `name[1]`… */
  count: z.union([z.number().int().min(0).max(100_000), z.string()]).optional(),
  /** A list or map (or a template giving one); instances are addressed `name["key"]`. */
  forEach: z.union([z.array(z.union([z.string(), z.number()])), z.record(z.string(), z.unknown()), z.string()]).optional(),
  /** Resource names this one waits for besides those it references. */
  dependsOn: z.array(nameSchema).optional(),
  /** The phase (ordered wave) this resource belongs to; default the first. */
  phase: nameSchema.optional(),
  /** CEL condition over params: the resource exists only when it is true. */
  when: z.string().optional(),
  /** Labels of this resource's instances, besides the stack's own (metadata.labels). */
  labels: labelsSchema.optional(),
  /** Create-then-poll timeout; default the stack's. */
  timeoutSeconds: secondsSchema.optional(),
  lifecycle: z.strictObject({
    /** On replacement create the new object before deleting the old one. */
    createBeforeDestroy: z.boolean().optional(),
    /** Spec fields whose drift or change is ignored. */
    ignoreChanges: z.array(z.string()).optional(),
  }).optional(),
}).refine((r) => !(r.count !== undefined && r.forEach !== undefined), { message: 'use either count or forEach, not both' });
export type ResourceDef = z.infer<typeof ResourceDefSchema>;

export const PhaseSchema = z.strictObject({
  name: nameSchema,
  description: z.string().optional(),
});

/** Why a cron expression cannot be used as a schedule, or undefined when it can. */
export function cronProblem(expr: string): string | undefined {
  try {
    if (new Cron(expr, { paused: true }).nextRun() === null) return `cron expression "${expr}" never fires`;
  } catch (e) {
    return `cron expression "${expr}" is invalid (${(e as Error).message}); use 5 or 6 fields, e.g. "*/15 * * * *"`;
  }
  return undefined;
}

export const FailurePolicy = z.enum(['stop', 'continue', 'rollback']);
export type FailurePolicy = z.infer<typeof FailurePolicy>;

export const OptionsSchema = z.strictObject({
  /** Resources worked on at the same time. */
  parallelism: z.number().int().min(1).max(1000).default(10),
  /** stop: finish what runs, start nothing new; continue: keep going on independent branches; rollback: undo this apply. */
  failurePolicy: FailurePolicy.default('stop'),
  /** Default for resources: create a replacement before deleting the old one. */
  createBeforeDestroy: z.boolean().default(false),
  resourceTimeoutSeconds: secondsSchema.default(900),
  drift: z.strictObject({
    /** Cron expression for the scheduled observe (5 or 6 fields, UTC). */
    schedule: z.string().superRefine((v, ctx) => {
      const problem = cronProblem(v);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }).optional(),
    /** Apply the recorded document when drift is found. */
    autoReconcile: z.boolean().default(false),
  }).optional(),
});
export type StackOptions = z.infer<typeof OptionsSchema>;

export const StackSpecSchema = z.strictObject({
  parameters: z.record(identSchema, ParameterSchema).default({}),
  options: OptionsSchema.prefault({}),
  phases: z.array(PhaseSchema).default([]),
  resources: z.record(z.string().regex(NAME_RE, 'resource names must be lowercase letters, digits and dashes, starting with a letter'), ResourceDefSchema).default({}),
  workflows: WorkflowsSchema.default({}),
  /** Values shown after apply (templated). */
  outputs: z.record(identSchema, z.unknown()).default({}),
});

export const StackDocumentSchema = z.strictObject({
  apiVersion: z.literal(API_VERSION, { error: `apiVersion must be ${API_VERSION}` }),
  kind: z.literal('Stack', { error: 'kind must be Stack' }),
  metadata: z.strictObject({
    name: nameSchema,
    project: z.string().min(1).default('default'),
    description: displayTextSchema(1000).optional(),
    labels: labelsSchema.optional(),
  }),
  spec: StackSpecSchema.prefault({}),
});
export type StackDocument = z.infer<typeof StackDocumentSchema>;
export type StackDocumentInput = z.input<typeof StackDocumentSchema>;
