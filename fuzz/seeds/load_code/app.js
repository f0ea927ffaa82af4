function f(a) { return a + 1; }
class B { m() { return 2; } }
