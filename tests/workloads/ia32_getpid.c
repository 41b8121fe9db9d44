/* i386 program without libc: 100 getpid calls, then execve("/bin/true"). */
static long sys3(long nr, long a, long b, long c)
{
	long ret;
	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
	return ret;
}
void _start(void)
{
	static char *argv[] = { "/bin/true", 0 };
	static char *envp[] = { 0 };
	char buf[1];
	int i;
	sys3(3, 0, (long)buf, 1);	/* read(0, buf, 1): wait for the gate */
	for (i = 0; i < 100; i++)
		sys3(20, 0, 0, 0);	/* getpid */
	sys3(11, (long)argv[0], (long)argv, (long)envp);	/* execve */
	sys3(1, 1, 0, 0);	/* exit(1) if execve failed */
}
