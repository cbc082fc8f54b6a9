"""Every number the rules compare against, in one place, each with where it comes from.

Override any of them with `Thresholds(field=value)` or `dataclasses.replace(Thresholds(), ...)` and
pass the result to `advise(run, config=...)`. "Calibrated" means the value was set from the
fault-injection suite (tests/test_fault_injection.py): it separates the injected faults from the
healthy runs there with a margin; docs/diagnostics.md lists the measured values.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Thresholds:
    """Thresholds of all rules (see docs/diagnostics.md for the reasoning behind each)."""

    # -- reading the loss curve ---------------------------------------------------------------
    # Fewer finite train-loss values than this: trend rules are skipped and an info finding says
    # so. A curve needs a few dozen points before "rising" and "flat" mean anything.
    min_steps: int = 20
    # Smoothing window for the train loss: this fraction of the run, at least smooth_min steps
    # (a rolling median, so single outlier batches do not move it).
    smooth_frac: float = 0.02
    smooth_min: int = 5
    # A live run (status "running") gets the verdicts about how a run ends (rules.loss.END_OF_RUN_RULES:
    # underfitting, overfitting, a final plateau, low confidence, ...) only once this fraction
    # of its planned steps (run.json total_steps) has passed; without a plan, only when it ends.
    # Calibrated by cutting the 67 finished runs with a plan (samples and fault-injection suite) at
    # each tenth and judging them as if ended: from 0.5 on none of the 20 healthy ones gets a
    # warning (at 0.4 two did: a GRU that learns late, an MLP whose validation loss wobbled), and
    # 77 of the 85 end-of-run warnings of the finished runs are already there.
    live_min_progress: float = 0.5
    # The initial loss is the first recorded train loss: the only one computed before any update
    # has acted (CS231n, "Neural Networks 3": look for the correct loss at chance performance).
    # Raising this takes the median of the first few, which later updates can already distort.
    init_steps: int = 1

    # -- update-to-weight ratio ||dw|| / ||w|| (per optimizer step, weight matrices only) -------
    # CS231n "Neural Networks 3": "a rough heuristic is that this ratio should be somewhere
    # around 1e-3". Shown as a guide only.
    update_ratio_guide_cs231n: float = 1e-3
    # The project's tuning notes (source notes 002): an update should be "about 1% of the
    # parameter, not 50% or 0.001%". Shown as a guide only.
    update_ratio_guide_notes: float = 1e-2
    # The band the rules act on, compared per layer weight with its large updates (verdicts.
    # update_statistic: 90th percentile over the first half of the run, or over the whole run if
    # that is larger). Above the high end updates rewrite the weights (10x the notes' 1%, 100x
    # CS231n's 1e-3); below the low end (a third of CS231n's 1e-3) they barely move. No layer of a
    # healthy run (samples; fault-injection suite, seeds 0-2) is outside the band: 7.3e-4
    # (optimizer_sgd, plain SGD that is merely slow) to 0.089 (docs/diagnostics.md).
    update_ratio_high: float = 0.1
    update_ratio_low: float = 3e-4
    # Between this and update_ratio_high a layer's updates are "large": fine while the loss falls,
    # the first thing to lower when it climbs. lr_too_high needs most layer weights at "large" or
    # above: a loss that climbs while the updates are ordinary has another cause. Calibrated on the
    # typical layer (median over layer weights): the runs whose too-high learning rate made the
    # loss climb, spike or turn NaN read 0.067 (sample lr_too_high) and up (0.109 and up in the
    # fault-injection suite, seeds 0-2); lstm_exploding, whose loss jumps from one gradient spike
    # that clipping removes at the same learning rate, reads 0.029; 0.04 sits between them with a
    # margin of 1.4x on either side. Healthy runs read up to 0.069 (batch norm, RMSprop): "large"
    # alone is no fault.
    update_ratio_large: float = 0.04
    # Far too low: a typical layer weight moving by less than this per step (100x below CS231n's
    # 1e-3 guide, 30x below the low end) cannot learn in any useful number of steps: even 1,000
    # steps all in one direction change it by at most 1% of its norm. lr_too_low is then critical
    # (a sweep's diagnosis pruner stops such a trial), and a live run gets that verdict as soon as
    # its loss has made little progress, not only from live_min_progress on. Healthy runs read
    # 7.3e-4 and up (samples, fault-injection suite), 73x above it; the sample lr_too_low (SGD at
    # 1e-4, 100x too low) reads 5.6e-6 and its accuracy stays at chance.
    update_ratio_far_low: float = 1e-5
    # Updates too small because the gradients are tiny, not the step size: for an optimizer whose
    # step follows the gradient's size (SGD, momentum; not Adam and the other adaptive ones, whose
    # steps are about lr whatever the gradient), the learning rate that would lift the typical update
    # to update_ratio_low (lr x update_ratio_low / typical update) is above this, and so is the one a
    # plain SGD step along the typical layer's gradient would need (update_ratio_low / (||g|| / ||w||)).
    # No SGD recipe goes near it: Goyal et al. (2017) train ResNet-50 at 3.2 for a batch of 8,192
    # (0.1 per 256). Then no usable learning rate moves the weights: the signal collapsed (a too-small
    # init shrinks it in every layer, forward and back), and vanishing_gradients names it, not
    # lr_too_low. Measured (lr needed): runs whose step size is too small 0.0033-0.0053 (sample
    # lr_too_low, SGD at 1e-6 on healthy inits), vanishing_sigmoid 2.2; deep small_normal nets under
    # SGD/momentum at lr 6.7e-4-0.1 364-8,000.
    sgd_lr_max: float = 10.0
    # An update at least this large moved a weight by more than its own norm: a step that rewrites
    # the weight, whatever the run's other steps read. lr_too_high takes most layer weights doing so
    # at or before a blow-up of the loss as its update evidence (the table's 90th percentile drops
    # that one step): Adam at lr 0.3 on a GPT-2 init read 15-30 at step 1 (0.15 at lr 3e-3); the
    # LSTM sample whose loss spiked from one exploding gradient (lstm_exploding) read at most 0.55.
    update_ratio_rewrite: float = 1.0

    # -- lr_too_high ---------------------------------------------------------------------------
    # Divergence: the smoothed loss climbs to diverge_factor x its running minimum and by at
    # least diverge_abs_frac of the initial loss (calibrated; the tuning notes: "learning rate
    # too large: the loss curve may rise").
    diverge_factor: float = 1.5
    diverge_abs_frac: float = 0.25
    # A single raw loss this many times the initial loss after the start is a blow-up even when
    # the run recovers from it: the model became twice as wrong as a uniform guess (calibrated;
    # healthy runs peaked at 1.14x).
    spike_factor: float = 2.0
    # ... and either only counts beyond the loss's own noise: a smoothed rise of noise_band, a single
    # raw spike of twice that, times the robust standard deviation of the raw loss around its rolling
    # median (1.4826 x its median absolute deviation). A high but working learning rate makes noisy
    # batches, not a climb (issue 14: a ResNet at lr 0.025 reaching 93.6% was read as diverging).
    # Three standard deviations, the usual band of a control chart.
    noise_band: float = 3.0
    # A too-high learning rate that does not blow the loss up still shows in the weights: they grow
    # under large updates (the scale of a weight feeding no normalization layer is not free, so
    # growing it is what an oversized step does). Most layer weights reading "large" or more on the
    # Updates page and the typical such weight grown this many times over the run is a fault.
    # Calibrated on the runs whose updates read large, seeds 0-2: healthy ones grew at most 4.2x
    # (sample batchnorm_high_lr; fault suite up to 3.6x, corpus 1.4-1.5x), the ones whose learning
    # rate was too high 5.4x and more (fault suite: lr_high_mlp_adam 5.4-6.1x, also caught by its
    # spikes), the corpus's nanoGPT-style char model 8.6-9.5x at lr x30 with clipping (issue 14's
    # case, caught by this alone) and 8.9-10.2x at lr x100 without. Healthy runs with in-range
    # updates may grow more (corpus makemore 10x): growth counts only under large updates.
    lr_weight_growth: float = 5.0
    # A loss that turns NaN before the smoothed loss has fallen by this fraction of its initial
    # value, i.e. before the run learned anything, is blamed on the step size (calibrated).
    early_nan_progress: float = 0.1
    # Oscillation: median |step-to-step change| of the loss relative to its median level over
    # the second half, while no progress is made (tuning notes: "oscillation ... the learning rate
    # is large"; calibrated).
    oscillation_ratio: float = 0.5

    # -- lr_too_low / loss_plateau / underfitting ----------------------------------------------
    # Loss levels are read relative to two anchors: the reference (ln(classes) when known, else
    # the initial loss) and the floor (0, or the entropy of label-smoothed targets). A run "made
    # little progress" when its final smoothed loss is still above this fraction of the way from
    # the floor to the reference. Calibrated (injected lr/gradient faults ended at 0.97-1.0,
    # healthy runs at most 0.07).
    progress_frac: float = 0.6
    # ... where the lowest reachable loss is unknown (a language model: text has an entropy of its
    # own, a converged character model sits near half of ln(vocabulary); a regression, a VAE), a
    # level says nothing by itself: the run made little progress when its smoothed loss fell by less
    # than this fraction of the reference (ln(vocabulary), else the initial loss). Calibrated on the
    # corpus (benchmarks/advice_corpus.py), seeds 0-2: healthy language models and VAEs fell by
    # 31-45% (word LSTM 31%, char GPT 41%, VAE 42-45%), the VAE at a 100x too small learning rate by
    # 3.9-4.7%.
    progress_min_drop: float = 0.1
    # A plateau is a final stretch of at least plateau_min_frac of the run in which the smoothed
    # loss improved by less than plateau_tol (relative). Calibrated.
    plateau_tol: float = 0.03
    plateau_min_frac: float = 0.3
    # Underfitting: final train loss above underfit_loss_frac of the floor-to-reference distance
    # while the validation loss is within underfit_gap of it (no generalization gap): the model
    # does not fit even the training data (tuning notes 002: train and test accuracy comparable
    # and poor means under-fitting; CS231n: "overfit a tiny subset first").
    underfit_loss_frac: float = 0.4
    underfit_gap: float = 0.25
    # A loss that fell by more than this fraction of the chance-to-floor distance over the last
    # third of the run is "still learning": underfitting is then only an info (train longer) and
    # underconfidence is not judged yet (calibrated).
    still_falling: float = 0.05

    # -- overfitting ---------------------------------------------------------------------------
    # Generalization loss of Prechelt ("Early Stopping - But When?", 1998): GL = val/min(val) - 1.
    # His stopping criteria use GL of a few percent; we report info from overfit_info_rise and
    # warn from overfit_val_rise while the train loss kept falling (calibrated).
    overfit_info_rise: float = 0.05
    overfit_val_rise: float = 0.25
    # ... and the rise must also be at least this fraction of the reference loss in absolute
    # terms, so a val loss going from 0.01 to 0.03 is not called overfitting.
    overfit_abs_rise: float = 0.05
    # ... or, where the train loss has flattened (a model that memorised its small training set has
    # nothing left to fall), while the train loss averaged over the steps of those last evaluations
    # is this fraction or more below the evaluation loss: it fits what it memorised (issue 14's
    # makemore on 200 names: train 0.79, validation 2.98 -> 3.22 -> 3.41). A rising validation loss
    # is still required: a gap alone is the ordinary generalization gap. Calibrated, seeds 0-2: the
    # healthy language models and VAEs of the corpus end with gaps of -1% to 12%, the overfit ones
    # 32-35% (word LSTM) and 70-72% (makemore). A classifier near its floor has a wide relative gap
    # whenever its train loss is tiny (healthy ones up to 90%, fault suite): there the absolute rise
    # (overfit_abs_rise) is what separates: the healthy ones rose by 0.034 x ln(C) at most (fault
    # suite, seeds 0-2; sample deep_relu_he), except the sample overfitting_fixed at 0.0496, at the
    # limit (its validation loss went from 0.056 to 0.11 over 3 classes).
    overfit_loss_gap: float = 0.25
    # Accuracy gap train - val that counts as not generalizing (AUTOTRAINER's "test not well":
    # 0.1 when train accuracy <= 0.9, 0.07 above; Zhang et al., ICSE 2021).
    overfit_acc_gap: float = 0.1
    overfit_acc_gap_high: float = 0.07
    # Evaluation accuracy falling this far below its best (mean of the last 3 evaluations) while
    # the train loss keeps falling: the accuracy form of Prechelt's generalization loss.
    overfit_acc_drop: float = 0.05

    # -- activations ---------------------------------------------------------------------------
    # Fraction of ReLU units that output zero for every sample of a batch. CS231n "Neural
    # Networks 1": with a too-high learning rate "as much as 40% of your network can be dead";
    # we warn at 40% in any layer (median over the last part of the run) and call >= 90% critical.
    dead_warn: float = 0.4
    dead_critical: float = 0.9
    # Fraction of bounded-activation outputs within 1% of a bound (sigmoid/tanh), median over the
    # last part of the run (Glorot & Bengio, AISTATS 2010: saturated top sigmoid layers stall
    # learning; calibrated).
    saturation_warn: float = 0.3
    saturation_critical: float = 0.8
    # "Last part of the run" for activation rules: this trailing fraction of the samples.
    tail_frac: float = 0.3
    # A network whose final train loss is within this fraction of the chance-to-floor distance
    # from the floor fits its training data; dead units there cost capacity, not fit, and are
    # reported as info (critical fractions still warn).
    fits_well: float = 0.1

    # -- gradients -----------------------------------------------------------------------------
    # No gradient: a layer weight whose mean |gradient| is exactly zero on at least this many
    # recorded steps in a row, through the last one (dead units feeding it, an all-zero init). One
    # zero sample can be a batch in which every unit happened to be off; three in a row at the
    # probes' cadence span 10-150 optimizer steps of a network that no longer learns there.
    no_gradient_min_samples: int = 3
    # ... and it starts where, from then on, this share of the recorded gradients is zero: a dead
    # layer comes alive for a batch now and then when one unit happens to fire (dying_relu: 2 of 15
    # samples after step 127 carry a gradient 1e-5 of the layer's earlier size, then zero again).
    no_gradient_share: float = 0.75
    # Vanishing: a weight layer whose mean |gradient| is below vanish_ratio x that of the layer
    # with the largest one (median over the run). AUTOTRAINER uses first/last gradient-norm ratio
    # < 1e-3; per-element means make layers of different sizes comparable (calibrated).
    vanish_ratio: float = 1e-3
    # Exploding: the global gradient norm grows to explode_growth x its early median, or a layer's
    # mean |gradient| exceeds explode_ratio x the last layer's (AUTOTRAINER: first/last norm ratio
    # > 70), or any gradient is NaN/Inf.
    explode_growth: float = 100.0
    explode_ratio: float = 70.0
    # ... or, for an optimizer whose step follows the gradient's size (SGD; not Adam and the other
    # adaptive ones, which are scale invariant), the step it takes along the typical layer's
    # gradient, lr x ||grad|| / ||weight|| (median over layers not followed by batch norm, whose
    # weights are scale-invariant), exceeds update_ratio_high on two recorded steps after the first
    # (or 10x it on one). The first step is left out: its gradient, taken before any update, shows
    # the init or the loss's reduction, not a gradient that grew.
    # ... and on those two steps it must have grown: at least explode_step_growth x the step at the
    # first recorded step after an update (the 10x criterion needs no growth). An untrained
    # network's gradient is at its largest in the first updates, so a high learning rate starts
    # with its largest steps and then shrinks them: that is the learning rate at work (lr_too_high
    # judges it by the update ratios), not a gradient that explodes. Measured where the step reached
    # half the limit: healthy runs grew it 1.7x at most (corpus word LSTM, seed 1, one sample at
    # 0.100; the ResNet at lr 0.2, which crossed 0.1 on two early samples on seed 2: 1.05x); the
    # fault suite's exploding runs 4x (lr_high_cnn_sgd), 8.5x (lr_high_spirals_momentum), 27x
    # (lr_high_warmup), seed 0. 2.5 sits at their geometric middle.
    explode_step_growth: float = 2.5
    # ... or the total gradient norm jumps to this multiple of its median over the previous 20
    # steps and the raw loss at least doubles within a few steps. Spikes alone are common in
    # healthy runs near a minimum (measured up to 260x); with the loss jump they are what throws a
    # run back (the lstm_exploding sample: 65x, then the loss returned to chance). Calibrated.
    explode_spike: float = 10.0

    # -- real-bug classes (diagnostics/rules/bugs.py) --------------------------------------------
    # Gradients never reset (optimizer.zero_grad() left out): the total gradient norm ends at least
    # stale_grad_growth times its first recorded value and then changes by a median of less than
    # stale_grad_change between recorded steps (over the second half): a sum that new batches barely
    # move. Healthy runs of the fault suite, the samples and the corpus: median changes of 6% to 91%
    # (a mini-batch gradient is recomputed each step); clipped runs stay constant but do not grow.
    stale_grad_growth: float = 10.0
    stale_grad_change: float = 0.01
    # A softmax before CrossEntropyLoss: the mean confidence is within this fraction of e / (e + C - 1),
    # the most a softmax over scores in [0, 1] can give, the smoothed loss within 5x this fraction of
    # ln(e + C - 1) - 1, the least it can be, and accuracy is underconfidence_gap or more above the
    # confidence (the corpus's softmax-then-CrossEntropyLoss classifier: 1.7% and 1.6% off).
    softmax_cap_margin: float = 0.03
    # Unnormalized inputs: the first layer's output std at the first recorded step (before any
    # update) is at least input_scale_std, while the next weighted layer's gain (its output std over
    # its input's) is at most input_scale_gain. A standard init over standardized inputs gives 0.3-1.3
    # there (every run of the suite, the samples and the corpus); raw 0-16 digits 11, raw 0-255
    # pixels 69. A too-large init also gives a large first layer, but its next layer's gain is 8-12
    # (every layer amplifies), against 0.6-1.7 for default and He inits.
    input_scale_std: float = 5.0
    input_scale_gain: float = 2.0
    # Over-regularization: weight decay that shrank the typical layer weight below this fraction of
    # its first recorded norm (healthy runs grew theirs: 0.9x and up), in a model that does not fit.
    over_reg_shrink: float = 0.6
    # Unshuffled data: a classifier's detrended batch loss correlates with itself at a lag of
    # unshuffled_min_lag steps or more (an epoch of ten batches or more; shorter lags are what the
    # detrending leaves) by unshuffled_corr or more: the same batches in the same order every epoch.
    # Healthy classifiers (suite, samples, corpus): 0.37 at most; a class-sorted dataset read in
    # order: 0.84. Only judged where the loss is noisy at all (the spread of the batch losses at
    # least unshuffled_noise of their level): a full-batch loss has no batches to compare.
    unshuffled_corr: float = 0.6
    unshuffled_min_lag: int = 10
    unshuffled_noise: float = 0.02
    # Frozen parameters: a warning when at least this share of the parameters never trains and the
    # model does not fit; an info otherwise (fine-tuning freezes a backbone on purpose).
    frozen_share: float = 0.5

    # -- schedule, labels, targets (rules/schedule.py, rules/labels.py) --------------------------
    # A learning-rate schedule stepped per batch instead of per epoch: the recorded lr fell to
    # 1/lr_collapse_factor of its peak within the first lr_collapse_within of the run's steps and
    # stayed below 1/sqrt(lr_collapse_factor) of it (a warm restart, SGDR, comes back up), while the
    # loss improved after that point by less than lr_collapse_gain of its level there, while it was
    # still falling when the decay began (by half of that or more, and twice what it gained after:
    # a loss that had stalled before the lr fell, as reduce-on-plateau reacts to, is not this).
    # Healthy schedules reach 1/100 of their peak late: step schedules at 56% of the run or later
    # (He et al. 2016, ResNet: /10 at 32k and 48k of 64k iterations, 75%; Goyal et al. 2017: /10 at
    # epochs 30, 60, 80 of 90, 67%; PyTorch's transfer learning tutorial StepLR(7, 0.1) over 25
    # epochs, 56%), cosine, linear-to-zero and OneCycle in
    # their last 6% (cos(pi x) = -0.98 at x = 0.94); a per-epoch StepLR(30, 0.1) or ExponentialLR(0.95)
    # called every batch gets there after 60 or 90 batches, well under 1% of a typical run (the
    # corpus's ExponentialLR(0.9) per batch: step 45 of 360, 12%). 0.25 sits between, 2.2x below the
    # earliest healthy schedule above.
    lr_collapse_factor: float = 100.0
    lr_collapse_within: float = 0.25
    lr_collapse_gain: float = 0.05
    # Labels that do not belong to the inputs: the evaluation accuracy ends (mean of the last third
    # of the evaluations) within labels_chance_acc of chance, as a fraction of the way from chance
    # (1/C) to 1, the evaluation loss stays at ln(C) or above (within labels_chance_loss of it) and
    # does not fall over the evaluations (by no more than that fraction either), while the train loss
    # over the same steps is at least labels_train_gap x ln(C) below it and below ln(C) itself (a
    # train loss above chance fitted nothing: the corpus's forgotten zero_grad at seed 2, train 45
    # against a validation loss of 48, is a blow-up, not memorising): the network memorises
    # examples it sees again and learns nothing that carries over. A learnable task with updates of a
    # healthy size leaves chance within a few dozen steps (the corpus's digit MLP: 68% at step 20);
    # a short or slow run has no train/validation gap yet. The corpus's permuted labels (seeds 0-2):
    # accuracy -0.02 to 0.035 of the way above chance (an accuracy at chance measured on 360
    # examples of 10 classes wanders by a standard error of 0.019 of the way: 0.1 leaves five), the
    # evaluation loss 1.00-1.08 x ln(10), the train loss 0.084-0.17 x ln(10) below it
    # (0.085 x ln(10) below ln(10) at seeds 0 and 2). Runs that
    # learned anything are far above chance (the corpus's lr collapsed after 44 steps: 0.39).
    labels_chance_acc: float = 0.1
    labels_chance_loss: float = 0.03
    labels_train_gap: float = 0.03
    # Targets that are not the logits' batch: the loss passed to record_step is below
    # targets_loss_ratio x the cross-entropy the probes recompute from the passed logits and targets
    # (median over the second half of the sampled steps), and, when the record starts at step 1,
    # the two agreed there within targets_start_agree (an untrained model's predictions are near
    # uniform, so any targets give about ln(C); a loss scaled for gradient accumulation is off by
    # its factor from the first step on). Label smoothing, auxiliary losses, z-loss and weight
    # penalties make the passed loss larger, not smaller; nanoGPT's loop with the recording where its
    # logging is (Y already the next batch): 0.57 at the end, 1.015 at step 1.
    targets_loss_ratio: float = 0.8
    targets_start_agree: float = 0.1

    # -- predictions ---------------------------------------------------------------------------
    # Overconfidence: mean confidence above accuracy by this much on the evaluation split
    # (expected calibration error; Guo et al., "On Calibration of Modern Neural Networks",
    # ICML 2017, report 0.04-0.16 for uncalibrated modern networks).
    overconfidence_gap: float = 0.1
    # Low confidence: mean max-probability less than this fraction of the way from uniform (1/C)
    # to certain (1.0); or accuracy above confidence by underconfidence_gap (tuning notes 002:
    # softmax outputs near 0.5 mean the model still needs work).
    low_confidence_frac: float = 0.25
    underconfidence_gap: float = 0.15
    # ... judged (a warning) only once the model stopped sharpening on the split judged, since
    # confidence lags accuracy while it learns (accuracy moves once the right class overtakes,
    # confidence only as the logits grow): its mean confidence over the last third of its records
    # rose above the middle third's by at most underconfidence_closing of the gap, and the last
    # third of its loss records made at most underconfidence_loss_drop of the loss's whole drop.
    # Measured: a healthy GPT-2 learning arithmetic (val accuracy 0.98, confidence 0.78) closed 15%
    # and made 32% on val; a tiny GPT-2 whose linear schedule ended at train accuracy 1.0 and
    # confidence 0.6 closed 46%; 16 steps into training it made 26% of its train-loss drop; label
    # smoothing 0.6-0.7 (the fault-injection runs this rule exists for) 0.3-7.6% and 2-4% on val.
    underconfidence_closing: float = 0.1
    underconfidence_loss_drop: float = 0.1

    # -- bad_init_loss -------------------------------------------------------------------------
    # Initial loss outside [low, high] x ln(classes) (CS231n "Neural Networks 3": expect -ln(1/C)
    # at initialization, e.g. 2.302 for 10 classes; Karpathy, "A Recipe for Training Neural
    # Networks", 2019: "verify loss @ init"). Calibrated on default-initialized models.
    bad_init_high: float = 1.6
    bad_init_low: float = 0.5
    # ... and at least this many nats away from ln(C), so binary tasks (ln 2 = 0.69) are not
    # flagged for ordinary init noise.
    bad_init_abs: float = 0.5

    def with_overrides(self, pairs: dict[str, str | float]) -> "Thresholds":
        """A copy with some fields replaced; values may be strings (from the command line)."""
        known = {f.name: f for f in fields(self)}
        values = {}
        for key, raw in pairs.items():
            if key not in known:
                raise KeyError(f"unknown threshold {key!r}; known: {', '.join(sorted(known))}")
            kind = int if known[key].type in (int, "int") else float
            try:
                values[key] = kind(raw)
            except (TypeError, ValueError):
                raise ValueError(f"threshold {key} needs a number, got {raw!r}") from None
        from dataclasses import replace
        return replace(self, **values)
