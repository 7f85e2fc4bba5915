"""``ember.utils``: data, tensorboard, progress."""

from . import data
