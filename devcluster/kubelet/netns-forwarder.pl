# The kubelet's forwarder host: one per kubelet, started once as root (setpriv --pdeathsig, so it
# dies with the kubelet). Each pod's forwarder is a fork of it — a few hundred microseconds —
# rather than a process the kubelet spawns (a fork of the kubelet's large Node process, then
# nsenter, setpriv and perl's start-up: ~10-15 ms of CPU per pod). Perl, not Node: perl-base is
# Essential on Debian (Socket, IO::Select, POSIX, Config only) and a forwarder costs a few MB.
#
# In (stdin lines): "REQ PID IP SOCK EGRESS": start a forwarder in the network namespace of PID
# (the container's init) for pod IP, reporting to the kubelet's Unix socket SOCK (a host path:
# Unix socket paths are not bound to a network namespace); EGRESS = egress port, 0 = none.
# Out (stdout lines, written by the forked child once it is set up, or by the host if it cannot
# fork): "started REQ PID" (the forwarder, leader of its own process group), or "failed REQ
# MESSAGE". stdin closed = the kubelet let go: exit.
#
# A forwarder enters the namespace, becomes uid/gid 65534 (groups: 65534 only) with no_new_privs,
# dies with the host, then dials SOCK and writes "ffffffff\n": that connection is its control
# channel. In (control lines): "ID PORT": open a TCP connection to IP:PORT here, connect to SOCK,
# write the ID as 8 hex digits and a newline, then copy bytes both ways (one forked child per
# connection). Out (control lines): "ready", "fail ID" (nothing listens there), "egress-fail
# MESSAGE". With an egress port: a listener on 127.0.0.1:PORT whose every connection goes to SOCK
# under ID 0; the kubelet opens it to the egress proxy and nothing else. Control closed: exit.
use strict;
use warnings;
use Config;
use POSIX ();
use Socket qw(AF_INET AF_UNIX SOCK_STREAM IPPROTO_TCP TCP_NODELAY SHUT_WR
  inet_aton pack_sockaddr_in pack_sockaddr_un);
use IO::Select;

$SIG{PIPE} = 'IGNORE';

my %SYS = $Config{archname} =~ /^x86_64/ ? (setns => 308, prctl => 157)
  : $Config{archname} =~ /^aarch64/ ? (setns => 268, prctl => 167)
  : ();
my $CLONE_NEWNET = 0x40000000;
my $PR_SET_PDEATHSIG = 1;
my $PR_SET_NO_NEW_PRIVS = 38;
my $NOBODY = 65534;

sub say_to { syswrite($_[0], "$_[1]\n") }

# Runs in the forked child, still root: namespace, then identity, then the death signal (a
# credential change clears it), then a check that the host did not die in between.
sub become_forwarder {
  my ($pid, $host) = @_;
  die "no setns/prctl syscall numbers for $Config{archname}\n" unless %SYS;
  open(my $ns, '<', "/proc/$pid/ns/net") or die "open /proc/$pid/ns/net: $!\n";
  syscall($SYS{setns}, fileno($ns), $CLONE_NEWNET) == 0 or die "setns: $!\n";
  close($ns);
  POSIX::setpgid(0, 0) or die "setpgid: $!\n";
  $) = "$NOBODY $NOBODY";    # egid, and setgroups([65534]): root's groups are gone
  POSIX::setgid($NOBODY) or die "setgid: $!\n";
  POSIX::setuid($NOBODY) or die "setuid: $!\n";
  die "still privileged\n" if $< != $NOBODY || $> != $NOBODY || $( != $NOBODY || (split ' ', $))[0] != $NOBODY;
  syscall($SYS{prctl}, $PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 or die "no_new_privs: $!\n";
  syscall($SYS{prctl}, $PR_SET_PDEATHSIG, 9, 0, 0, 0) == 0 or die "pdeathsig: $!\n";
  exit 0 if getppid() != $host;
}

sub forwarder {
  my ($ip, $kubelet, $egress_port) = @_;
  $SIG{CHLD} = 'IGNORE';    # its connections' children: reaped by the kernel

  # In the container's first seconds a refused connection is tried again for a while: its server
  # is still starting, and the kubelet's first probe (period 1 s) would otherwise fail at once and
  # wait a whole period.
  my $young_until = time + 2;

  my $tcp_to = sub {
    my ($port) = @_;
    for (;;) {
      socket(my $s, AF_INET, SOCK_STREAM, IPPROTO_TCP) or return;
      setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
      return $s if connect($s, pack_sockaddr_in($port, inet_aton($ip)));
      return unless $!{ECONNREFUSED} && time < $young_until;
      close($s);
      select(undef, undef, undef, 0.02);
    }
  };

  my $to_kubelet = sub {
    my ($id) = @_;
    socket(my $u, AF_UNIX, SOCK_STREAM, 0) or return;
    connect($u, pack_sockaddr_un($kubelet)) or return;
    syswrite($u, sprintf("%08x\n", $id)) == 9 or return;
    return $u;
  };

  my $ctl = $to_kubelet->(0xffffffff) or exit 0;
  my $sel = IO::Select->new($ctl);
  my $egress;
  if ($egress_port) {
    if (socket($egress, AF_INET, SOCK_STREAM, IPPROTO_TCP)
      && bind($egress, pack_sockaddr_in($egress_port, inet_aton('127.0.0.1')))
      && listen($egress, 128))
    {
      $sel->add($egress);
    } else {
      say_to($ctl, "egress-fail $!");
      undef $egress;
    }
  }
  say_to($ctl, 'ready');

  my $pending = '';
  for (;;) {
    for my $fh ($sel->can_read) {
      if ($egress && $fh == $egress) {
        accept(my $c, $egress) or next;
        my $pid = fork;
        if (defined $pid && $pid == 0) {
          my $u = $to_kubelet->(0) or exit 0;
          splice_both($c, $u);
        }
        close($c);
        next;
      }
      my $n = sysread($ctl, my $buf, 4096);
      exit 0 unless $n;
      $pending .= $buf;
      while ($pending =~ s/^(\d+) (\d+)\n//) {
        my ($id, $port) = ($1, $2);
        my $pid = fork;
        next if !defined $pid || $pid > 0;
        my $t = $tcp_to->($port);
        if (!$t) {
          say_to($ctl, "fail $id");
          exit 0;
        }
        my $u = $to_kubelet->($id) or exit 0;
        splice_both($t, $u);
      }
    }
  }
}

# Both ways until both ends are done; an end that finishes sending is half-closed on the other.
sub splice_both {
  my ($a, $b) = @_;
  my %peer = (fileno($a) => $b, fileno($b) => $a);
  my $sel = IO::Select->new($a, $b);
  while ($sel->count) {
    for my $from ($sel->can_read) {
      my $n = sysread($from, my $buf, 65536);
      my $to = $peer{ fileno($from) };
      if (!$n) {
        exit 0 unless defined $n;    # an error: closing both resets nothing, ends both
        shutdown($to, SHUT_WR);
        $sel->remove($from);
        next;
      }
      my $off = 0;
      while ($off < $n) {
        my $w = syswrite($to, $buf, $n - $off, $off);
        exit 0 unless $w;
        $off += $w;
      }
    }
  }
  exit 0;
}

# The host waits for its forwarders itself (no SIGCHLD handler: a signal must not cut the read of
# a request short), each time a request comes and when it ends: their CPU time is then counted in
# the host's, so devcluster's process tree shows what the forwarders cost.
sub reap { 1 while waitpid(-1, POSIX::WNOHANG()) > 0 }

my $host = $$;
while (my $line = <STDIN>) {
  reap();
  my ($req, $pid, $ip, $sock, $egress) = $line =~ /^(\d+) (\d+) ([\d.]+) (\S+) (\d+)$/
    or next;
  my $child = fork;
  if (!defined $child) {
    say_to(\*STDOUT, "failed $req fork: $!");
    next;
  }
  if ($child == 0) {
    close(STDIN);
    eval { become_forwarder($pid, $host); 1 } or do {
      my $e = $@;
      $e =~ s/\s+/ /g;
      say_to(\*STDOUT, "failed $req $e");    # one short write to a pipe: never interleaved
      POSIX::_exit(1);
    };
    say_to(\*STDOUT, "started $req $$");
    open(STDOUT, '>', '/dev/null');
    forwarder($ip, $sock, $egress);
    POSIX::_exit(0);
  }
}
reap();
