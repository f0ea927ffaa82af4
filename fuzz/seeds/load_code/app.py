import os

class A:
    def f(self):
        return os.sep


def g():
    pass
