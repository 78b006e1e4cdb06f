/* Coefficients of 2^r on [-1/2, 1/2]: the degree-7 Taylor polynomial in r·ln2,
 * c_i = ln(2)^i / i! (truncation < 5e-9), highest degree first for Horner.
 * Shared by every ISA's exp2 so that they compute the same polynomial. */
#ifndef FATTN_EXP2_COEFFS_H
#define FATTN_EXP2_COEFFS_H

#define FATTN__EXP2_C7 1.5252733804e-5f
#define FATTN__EXP2_C6 1.5403530393e-4f
#define FATTN__EXP2_C5 1.3333558146e-3f
#define FATTN__EXP2_C4 9.6181291076e-3f
#define FATTN__EXP2_C3 5.5504108665e-2f
#define FATTN__EXP2_C2 2.4022650696e-1f
#define FATTN__EXP2_C1 6.9314718056e-1f
#define FATTN__EXP2_C0 1.0f

#endif
