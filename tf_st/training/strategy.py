"""Distribution strategy selection.

``auto`` picks MirroredStrategy when more than one GPU is visible, the default
strategy otherwise.  ``multi_worker`` reads ``TF_CONFIG``; multi-worker training under
Keras 3 is experimental upstream (keras-team/keras#20585), so it is offered, not
promised."""

import tensorflow as tf

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker")


def split_cpu(devices):
    """Splits the CPU into ``devices`` logical devices (MirroredStrategy on one CPU: tests,
    trying a multi-device run here).  Must run before TensorFlow starts its runtime."""
    if devices <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * int(devices))
    except RuntimeError:
        if len(tf.config.list_logical_devices("CPU")) != devices:
            raise RuntimeError(f"--cpu_devices={devices}: TensorFlow already started with "
                               f"{len(tf.config.list_logical_devices('CPU'))} CPU devices") \
                from None


def make_strategy(name="auto"):
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        cpus = tf.config.list_logical_devices("CPU")
        name = "mirrored" if len(gpus) > 1 or (not gpus and len(cpus) > 1) else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.MultiWorkerMirroredStrategy()
