// Package autoscaler decides how many replicas each model runs, with the
// semantics of Knative's KPA, and applies the counts through a Scaler it
// defines and others implement (the local process supervisor, later a
// Kubernetes scaler).
//
// It owns three things, each usable alone:
//   - Settings: a model's knobs with Knative's defaults (DefaultSettings),
//     validation, and SettingsFromAnnotations for the
//     autoscaling.knative.dev annotations users already write.
//   - Window: per-second buckets of samples averaged over the stable and
//     the panic window at an injected now.
//   - Decide: a pure function of (settings, averages, ready replicas,
//     decider State, now) to a Decision; the State it needs between
//     decisions (panic, scale-down-delay window, idle time, initial
//     scale) travels in and out explicitly, so every rule is
//     table-tested.
//
// The Autoscaler loop puts them together: once a second it samples the
// Observer for every model into that model's Window, every Settings.Tick
// it calls Decide, and when a decided count differs from the last one the
// Scaler accepted it calls Scaler.SetReplicas (again at the next decision
// after an error). Poke takes a sample and a decision at once, for the
// activator holding a request for a model at zero.
//
// # Where samples come from
//
// The Autoscaler samples: the gateway only keeps per-model counters (requests
// in flight including those the activator holds, and requests arrived) and
// exposes them as an Observer. So sampling has one clock, the Autoscaler's
// (testing/synctest's in tests), and the gateway's hot path does no more than an
// atomic add. For rps the Autoscaler turns the growth of the arrivals
// counter between two samples into a rate.
//
// # Knative rules, and where infergate differs
//
// Implemented as Knative does them (see Decide for the order): target =
// Target*TargetUtilization with ContainerConcurrency capping Target and
// 100 (concurrency) or 200 (rps) by default; ceil(average/target) per
// window; rate limits ceil(ready*MaxScaleUpRate) and
// floor(ready/MaxScaleDownRate) with ready counted as at least 1; panic
// when the panic window asks for PanicThresholdPercentage% of ready,
// holding the highest count until a stable window passes without
// another crossing; a restarted decider starts in panic when more than
// one replica is ready; scale-down delay as the maximum over the delay
// window; activation scale as the least count under traffic; initial
// scale until reached; min and max bounds; excess burst capacity; the
// window averages' partial-window rules.
//
// Different, because there is no Kubernetes here:
//   - Scale to zero. Knative marks a revision inactive once its stable
//     window is empty, puts the activator in the path, and removes the
//     last pod a grace period later. Here the activator is always in the
//     path for a model without ready replicas, so the decider itself
//     holds one replica for max(grace, pod retention) after the first
//     decision that saw an empty stable window, then decides 0; from the
//     last request that is about StableWindow + ScaleToZeroGracePeriod,
//     as in Knative. Knative's activation timeout (scale to zero a
//     revision that never became ready) is not implemented: a model that
//     never reaches its initial scale keeps asking for it.
//   - InitialScale 0 is allowed without a cluster-wide switch.
//   - The grace period can be set per model with the
//     autoscaling.knative.dev/scale-to-zero-grace-period annotation.
//   - Only the KPA class and linear averaging exist; the class
//     hpa.autoscaling.knative.dev, cpu and memory metrics and the
//     weighted-exponential algorithm are errors, as is an unknown
//     annotation under autoscaling.knative.dev.
//   - Tick is per model (Knative's is cluster-wide); decisions fall on the
//     once-a-second sampling.
//
// # What it never does
//
// It never starts or stops processes or Pods (the Scaler does), never
// holds or routes requests (the activator and the router do), never
// counts requests itself (the gateway does), and never reads configuration
// files: the control plane builds each model's Settings.
//
// Metrics, on the injected registerer, labelled by model:
//   - infergate_autoscaler_desired_replicas
//   - infergate_autoscaler_ready_replicas
//   - infergate_autoscaler_panic_mode (1 or 0)
//   - infergate_autoscaler_stable_concurrency, infergate_autoscaler_panic_concurrency
//     (models scaled on concurrency)
//   - infergate_autoscaler_stable_requests_per_second,
//     infergate_autoscaler_panic_requests_per_second (models scaled on rps)
//   - infergate_autoscaler_target (per replica, after utilization)
//   - infergate_autoscaler_excess_burst_capacity
//   - infergate_autoscaler_scale_errors_total
package autoscaler
