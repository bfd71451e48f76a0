"""Diagnostics a reader can run on their own code, one module per kind of failure.

=========================================  ==========================================
module                                      what it catches
=========================================  ==========================================
``rldebug.diagnostics.gradients`` (ch01)    which Q outputs receive gradient; the (B,1)-(B,)
                                            broadcasting bug (``gradient_mask_report``,
                                            ``check_td_shapes``)
``rldebug.diagnostics.collapse`` (ch01)     "it learns one action": spread of Q over actions,
                                            share of the commonest greedy action, and which
                                            cause fits (``action_collapse``)
``rldebug.diagnostics.gradcheck`` (ch02)    hand-written backward passes (finite differences
                                            and torch autograd)
``rldebug.diagnostics.recurrent`` (ch05)    no memory, hidden-state leaks, rollout/training
                                            mismatch (``memory_probe``,
                                            ``hidden_state_leak_test``,
                                            ``rollout_consistency``)
``rldebug.diagnostics.padding`` (ch09)      padded steps that leak into a loss
                                            (``padding_leak_test``)
``rldebug.diagnostics.ppo`` (ch08)          ratio = 1 and KL = 0 on the first minibatch
                                            (``first_epoch_check``)
``rldebug.diagnostics.diagnose`` (ch10)     all of the above in one call on your own model,
                                            loss or agent (``rldebug.diagnose``)
=========================================  ==========================================

``rldebug.diagnostics.adapters`` turns torch RNNs in either layout, cells and step
functions into the one protocol the recurrent checks use, and refuses outputs whose rows
mix samples. Import the module you need, for example
``from rldebug.diagnostics.recurrent import memory_probe``.
"""
