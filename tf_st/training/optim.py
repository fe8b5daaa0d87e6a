"""PyTorch-semantics SGD and the papers' learning-rate schedules.

Keras 3 ``SGD(weight_decay=...)`` decays weights *decoupled* from the gradient and
uses the momentum form ``v = mu v - lr g``; PyTorch's ``SGD(lr, momentum, weight_decay)``
adds ``wd * w`` to the gradient of *every* parameter (BN affine and biases included)
and uses ``v = mu v + g; w -= lr v``.  The two agree at constant lr but not after an lr
cut, and the coupled decay also feeds the momentum.  Every reference training script
uses PyTorch's form (docs/reference-implementations.md
"PyTorch to Keras parity / SGD"), so this module reproduces it.
"""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tf_st")
class TorchSGD(keras.optimizers.Optimizer):
    """``torch.optim.SGD(lr, momentum, weight_decay, nesterov)``, exactly."""

    def __init__(self, learning_rate=0.1, momentum=0.9, coupled_weight_decay=5e-4,
                 nesterov=False, name="torch_sgd", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if momentum < 0 or coupled_weight_decay < 0:
            raise ValueError("momentum and coupled_weight_decay must be >= 0")
        self.momentum = float(momentum)
        self.coupled_weight_decay = float(coupled_weight_decay)
        self.nesterov = bool(nesterov)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = [self.add_variable_from_reference(v, "momentum") for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        grad = ops.cast(gradient, variable.dtype)
        if self.coupled_weight_decay:
            grad = grad + self.coupled_weight_decay * variable
        if self.momentum:
            # PyTorch initialises the buffer with the first gradient; a zero buffer
            # times mu plus g is the same thing.
            buf = self.momentums[self._get_variable_index(variable)]
            new_buf = self.momentum * buf + grad
            self.assign(buf, new_buf)
            grad = grad + self.momentum * new_buf if self.nesterov else new_buf
        self.assign_sub(variable, lr * grad)

    def get_config(self):
        config = super().get_config()
        config.update(momentum=self.momentum, coupled_weight_decay=self.coupled_weight_decay,
                      nesterov=self.nesterov)
        return config


@keras.saving.register_keras_serializable(package="tf_st")
class EpochPiecewiseSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate set once per epoch: ``base * factor**k`` where ``k`` counts the
    (1-based) milestones reached, ST-AT ``utils.py:adjust_learning_rate`` style: with
    milestones (80, 100) epochs 1-79 use ``base``, 80-99 ``base/10``, 100+ ``base/100``.
    Driven by ``optimizer.iterations``, so it resumes with the optimizer state."""

    def __init__(self, base_lr, milestones, steps_per_epoch, factor=0.1, multipliers=None):
        self.base_lr = float(base_lr)
        self.milestones = tuple(int(m) for m in milestones)
        self.steps_per_epoch = int(steps_per_epoch)
        self.factor = float(factor)
        # ``multipliers[k]``: lr / base once milestone k is reached (FAT: 0.1, 0.01, 0.005);
        # default factor ** (k + 1).
        self.multipliers = (tuple(float(m) for m in multipliers) if multipliers
                            else tuple(self.factor ** (k + 1) for k in range(len(self.milestones))))
        if len(self.multipliers) != len(self.milestones):
            raise ValueError(f"{len(self.multipliers)} lr multipliers for "
                             f"{len(self.milestones)} milestones")

    def lr_at_epoch(self, epoch):
        """Learning rate of 1-based ``epoch`` (Python)."""
        reached = sum(epoch >= m for m in self.milestones)
        return self.base_lr * (self.multipliers[reached - 1] if reached else 1.0)

    def __call__(self, step):
        epoch = ops.floor_divide(ops.cast(step, "int64"), self.steps_per_epoch) + 1
        lr = ops.convert_to_tensor(self.base_lr, "float32")
        for m, mult in zip(self.milestones, self.multipliers):
            lr = ops.where(epoch >= m, self.base_lr * mult, lr)
        return lr

    def get_config(self):
        return {"base_lr": self.base_lr, "milestones": list(self.milestones),
                "steps_per_epoch": self.steps_per_epoch, "factor": self.factor,
                "multipliers": list(self.multipliers)}


@keras.saving.register_keras_serializable(package="tf_st")
class EpochCosineSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine annealing set once per epoch, as semisup-adv's RST (and ST-RST) do:
    ``base * 0.5 * (1 + cos((epoch - 1) / epochs * pi))`` for 1-based ``epoch``
    (docs/reference-implementations.md "ST-AT / ST-RST" and
    "RST / Loss and optimiser")."""

    def __init__(self, base_lr, epochs, steps_per_epoch):
        self.base_lr = float(base_lr)
        self.epochs = int(epochs)
        self.steps_per_epoch = int(steps_per_epoch)

    def lr_at_epoch(self, epoch):
        return self.base_lr * 0.5 * (1 + math.cos((epoch - 1) / self.epochs * math.pi))

    def __call__(self, step):
        epoch = ops.floor_divide(ops.cast(step, "int64"), self.steps_per_epoch) + 1
        frac = ops.cast(epoch - 1, "float32") / float(self.epochs)
        return self.base_lr * 0.5 * (1.0 + ops.cos(frac * math.pi))

    def get_config(self):
        return {"base_lr": self.base_lr, "epochs": self.epochs,
                "steps_per_epoch": self.steps_per_epoch}
